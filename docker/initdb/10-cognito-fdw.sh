#!/usr/bin/env bash
# Runs when the db container initialises an empty data volume (docker-entrypoint-initdb.d),
# and again at each `make dev` (idempotent):
# points the cognito_fdw server at the demo pool the seed service created and creates the
# foreign tables, with the project's own sql/cognito_fdw.sql.
set -euo pipefail

pool_id_file=${COGNITO_POOL_ID_FILE:-/shared/pool_id}
if [[ ! -s $pool_id_file ]]; then
    echo "cognito-fdw init: $pool_id_file is missing or empty; the seed service writes it" >&2
    exit 1
fi
user_pool_id=$(<"$pool_id_file")

# `make dev` runs it again on every start (docker compose exec), where the entrypoint's
# defaults are not set: the same defaults here.
user=${POSTGRES_USER:-postgres}
psql -v ON_ERROR_STOP=1 --username "$user" --dbname "${POSTGRES_DB:-$user}" \
    -v region="${COGNITO_REGION:-us-east-1}" \
    -v user_pool_id="$user_pool_id" \
    -v endpoint_url="${COGNITO_ENDPOINT_URL:-http://cognito:5000}" \
    -v aws_access_key_id="${COGNITO_AWS_ACCESS_KEY_ID:-test}" \
    -v aws_secret_access_key="${COGNITO_AWS_SECRET_ACCESS_KEY:-test}" \
    -f /usr/share/cognito-fdw/sql/cognito_fdw.sql
echo "cognito-fdw init: cognito.users reads pool $user_pool_id"
