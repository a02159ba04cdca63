-- cognito_fdw: the extension, a server, a user mapping and the users table, from psql variables.
--
--   psql -v user_pool_id=us-east-1_AbCdEf123 \
--        [-v region=us-east-1] [-v endpoint_url=http://127.0.0.1:5000] \
--        [-v aws_access_key_id=AKIA... -v aws_secret_access_key=...] \
--        [-v server=cognito_server] [-v schema=cognito] \
--        -f sql/cognito_fdw.sql
--
-- Without keys the server uses the AWS credential chain of the database server's OS user.
-- Keys go into a user mapping for the current role, never into the server's options.
-- Objects that already exist are left as they are.

\set ON_ERROR_STOP on

\if :{?user_pool_id}
\else
  \echo 'cognito_fdw.sql: set the pool with -v user_pool_id=us-east-1_AbCdEf123'
  -- Qualified: the search_path is not pinned yet, and a database's owner may have set
  -- it (ALTER DATABASE ... SET) to find its own /(integer, integer) first.
  SELECT 1 OPERATOR(pg_catalog./) 0 AS missing_user_pool_id;
\endif
\if :{?server}
\else
  \set server cognito_server
\endif
\if :{?schema}
\else
  \set schema cognito
\endif
\if :{?region}
\else
  \set region ''
\endif
\if :{?endpoint_url}
\else
  \set endpoint_url ''
\endif
\if :{?aws_access_key_id}
\else
  \set aws_access_key_id ''
\endif
\if :{?aws_secret_access_key}
\else
  \set aws_secret_access_key ''
\endif

-- CREATE EXTENSION puts multicorn in the first schema of the caller's search_path: by
-- default "$user", a schema named after the role running this, which a role with CREATE
-- on the database may have made (or one the database's owner put first with ALTER DATABASE
-- ... SET search_path).  As that schema's owner it may DROP SCHEMA ... CASCADE, and
-- PostgreSQL checks no ownership of what a CASCADE takes: multicorn, its wrapper, every
-- server, user mapping and foreign table on it.  So the schema (an existing multicorn's,
-- or the one it would go to) must be a superuser's, or the database owner's (public on
-- PostgreSQL 15, pg_database_owner's: that owner may drop the whole database anyway).
-- Qualified: the search_path is not pinned yet (pinned, pg_catalog would be the target).
SELECT NOT EXISTS (
  SELECT FROM pg_catalog.pg_namespace n
    JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) n.nspowner
   WHERE n.oid OPERATOR(pg_catalog.=) COALESCE(
           (SELECT e.extnamespace FROM pg_catalog.pg_extension e
             WHERE e.extname OPERATOR(pg_catalog.=) 'multicorn'),
           (SELECT s.oid FROM pg_catalog.pg_namespace s
             WHERE s.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema()))
     AND NOT o.rolsuper AND o.rolname OPERATOR(pg_catalog.<>) 'pg_database_owner'
) AS multicorn_schema_is_safe \gset
\if :multicorn_schema_is_safe
\else
  DO $$ BEGIN RAISE EXCEPTION USING
    MESSAGE = 'cognito_fdw.sql: extension multicorn is, or would be created, in a schema '
              'another role that is not a superuser owns',
    DETAIL = 'As its owner that role may DROP SCHEMA ... CASCADE, which takes multicorn '
             'with every server, user mapping and foreign table on it.',
    HINT = 'As a superuser: CREATE EXTENSION multicorn SCHEMA public (or ALTER EXTENSION '
           'multicorn SET SCHEMA public), then run the script again.';
  END $$;
\endif
CREATE EXTENSION IF NOT EXISTS multicorn;
-- Run by a superuser: every name below resolves in pg_catalog first, never in a schema
-- another role may create in (a role's format(text, text, ...) in public would otherwise
-- be a closer match than pg_catalog's and run as the superuser).
SET search_path = pg_catalog, pg_temp;

-- The event trigger that keeps user mappings and tables from redirecting the server.
\ir guard.sql
SET search_path = pg_catalog, pg_temp;  -- guard.sql resets it

SELECT format(
  'CREATE SERVER IF NOT EXISTS %I FOREIGN DATA WRAPPER multicorn OPTIONS '
  '(wrapper %L, user_pool_id %L%s%s)',
  :'server', 'cognito_fdw.CognitoFdw', :'user_pool_id',
  CASE WHEN :'region' <> '' THEN format(', region %L', :'region') ELSE '' END,
  CASE WHEN :'endpoint_url' <> '' THEN format(', endpoint_url %L', :'endpoint_url') ELSE '' END
) \gexec

-- A server of that name that was already there must be this role's or a superuser's: a
-- role that may own Multicorn servers could have made it first, pointed at an endpoint of
-- its own, and the keys below would sign the requests sent there and the tables below
-- read what it answers.  Likewise a users relation already in the schema, and the schema
-- itself: its owner may drop any table in it (the users table below too) and put a
-- relation of its own in its place, which every role reading cognito.users then reads.
SELECT NOT EXISTS (
  SELECT FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner
   WHERE n.nspname = :'schema' AND NOT o.rolsuper AND o.rolname <> current_user
) AND NOT EXISTS (
  SELECT FROM pg_foreign_server s JOIN pg_roles o ON o.oid = s.srvowner
   WHERE s.srvname = :'server' AND NOT o.rolsuper AND o.rolname <> current_user
) AND NOT EXISTS (
  SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_roles o ON o.oid = c.relowner
   WHERE n.nspname = :'schema' AND c.relname = 'users'
     AND NOT o.rolsuper AND o.rolname <> current_user
) AS objects_are_ours \gset
\if :objects_are_ours
\else
  DO $$ BEGIN RAISE EXCEPTION USING
    MESSAGE = 'cognito_fdw.sql: the server, the schema or the users table it would create '
              'already exists, owned by another role that is not a superuser',
    DETAIL = 'That role chose where its requests go and what it answers; the keys given '
             'here would sign them, and this install would read it.',
    HINT = 'Name another server (-v server=...) or schema (-v schema=...), or drop or take '
           'over the objects (ALTER SERVER ... OWNER TO) if they are meant to be used.';
  END $$;
\endif

SELECT format(
  'CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER %I OPTIONS '
  '(aws_access_key_id %L, aws_secret_access_key %L)',
  :'server', :'aws_access_key_id', :'aws_secret_access_key'
) WHERE :'aws_access_key_id' <> '' \gexec

SELECT format('CREATE SCHEMA IF NOT EXISTS %I', :'schema') \gexec

-- The seven columns of Supabase's Cognito wrapper, in its order, so its SQL works unchanged,
-- then sub, the key an app joins on (text: a join on it is one lookup per key,
-- docs/pushdown.md "Joining on sub").  Add any standard attribute by name (phone_number text,
-- email_verified boolean, ...) or any attribute with OPTIONS (attribute 'custom:tenant').
SELECT format(
  'CREATE FOREIGN TABLE IF NOT EXISTS %I.users ('
  '  username text, email text, status text, enabled boolean,'
  '  created_at timestamp, updated_at timestamp, attributes jsonb, sub text'
  ') SERVER %I OPTIONS (object %L)',
  :'schema', :'server', 'users'
) \gexec

-- Views of the wrapper's request counters, rate budgets and cache for pg_monitor.
\ir monitor.sql
RESET search_path;
