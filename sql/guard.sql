-- cognito_fdw guard: an event trigger that keeps roles from changing what a server does.
-- Installed by sql/cognito_fdw.sql (\ir guard.sql); needs a superuser.
--
-- Multicorn merges user-mapping options last, over the server's, and accepts any key there,
-- including `wrapper` (which loads another Python class) and `endpoint_url` (which sends
-- signed requests elsewhere).  A role with USAGE on a server may create its own user
-- mapping, and its own foreign tables.  So, for servers whose wrapper is cognito_fdw's:
--
--   * a user mapping may carry only credentials the mapped role brings itself (the list in
--     cognito_fdw.options.USER_MAPPING_OPTIONS), and role_arn only beside its own keys or
--     api_key_id/api_key_name (else it would assume a role with the server's credentials);
--   * a foreign table may carry no credential, secret-source or endpoint option;
-- and for every Multicorn server, `wrapper` is refused anywhere but on the server.
--
-- Opt-in: refuse plain-text secret keys (aws_secret_access_key, aws_session_token)
--   UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'user_mapping';  -- not on servers
--   UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'never';         -- nowhere
-- (server options are readable by every role in pg_foreign_server; user-mapping options
-- only by the mapped role, the server's owner and superusers).  Default 'allowed'.
-- Existing objects are not checked; the policy applies to the next CREATE or ALTER.

SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS cognito_fdw_guard;
REVOKE ALL ON SCHEMA cognito_fdw_guard FROM PUBLIC;

CREATE TABLE IF NOT EXISTS cognito_fdw_guard.policy (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  plaintext_keys text NOT NULL DEFAULT 'allowed'
    CHECK (plaintext_keys IN ('allowed', 'user_mapping', 'never'))
);
INSERT INTO cognito_fdw_guard.policy DEFAULT VALUES ON CONFLICT DO NOTHING;
REVOKE ALL ON cognito_fdw_guard.policy FROM PUBLIC;

CREATE OR REPLACE FUNCTION cognito_fdw_guard.check_options(
  what text, options text[], kind text  -- kind: 'server', 'user mapping' or 'table'
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
DECLARE
  -- Keep in step with cognito_fdw.options.USER_MAPPING_OPTIONS.
  user_mapping_options constant text[] := ARRAY[
    'aws_access_key_id', 'aws_secret_access_key', 'aws_session_token', 'api_key_id',
    'api_key_name', 'role_arn', 'external_id', 'role_session_name', 'role_duration_seconds'];
  table_refused constant text[] := user_mapping_options || ARRAY[
    'aws_profile', 'secrets_relation', 'secrets_conninfo', 'sts_endpoint_url',
    'endpoint_url'];
  keys text[];
  bad text[];
  policy text;
BEGIN
  SELECT array_agg(split_part(o, '=', 1)) INTO keys FROM unnest(options) o;
  keys := coalesce(keys, '{}');
  IF kind = 'user mapping' THEN
    SELECT array_agg(k ORDER BY k) INTO bad FROM unnest(keys) k
     WHERE k <> ALL (user_mapping_options);
    IF bad IS NOT NULL THEN
      RAISE EXCEPTION 'cognito_fdw: % may not set %', what, array_to_string(bad, ', ')
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'A user mapping may carry only credentials: '
                     || array_to_string(user_mapping_options, ', ')
                     || '. Set anything else on the server.';
    END IF;
    IF 'role_arn' = ANY (keys) AND NOT (keys && ARRAY['aws_secret_access_key', 'api_key_id',
                                                      'api_key_name']) THEN
      RAISE EXCEPTION 'cognito_fdw: % sets role_arn without credentials of its own', what
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Add aws_access_key_id with aws_secret_access_key or api_key_id to the '
                     'user mapping, or set role_arn on the server.';
    END IF;
  ELSIF kind = 'table' THEN
    SELECT array_agg(k ORDER BY k) INTO bad FROM unnest(keys) k WHERE k = ANY (table_refused);
    IF bad IS NOT NULL THEN
      RAISE EXCEPTION 'cognito_fdw: % may not set %', what, array_to_string(bad, ', ')
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Credentials go in a user mapping or on the server, endpoints on the server.';
    END IF;
  END IF;
  SELECT p.plaintext_keys INTO policy FROM cognito_fdw_guard.policy p;
  IF keys && ARRAY['aws_secret_access_key', 'aws_session_token']
     AND (policy = 'never' OR (policy = 'user_mapping' AND kind <> 'user mapping')) THEN
    RAISE EXCEPTION 'cognito_fdw: % holds a plain-text secret key', what
      USING ERRCODE = 'insufficient_privilege',
            HINT = CASE policy WHEN 'never' THEN
                     'This database refuses them (cognito_fdw_guard.policy): keep the secret '
                     'access key in vault and set api_key_id or api_key_name, or use '
                     'aws_profile, role_arn or the server''s credential chain.'
                   ELSE
                     'This database refuses them on servers, where every role can read them '
                     '(cognito_fdw_guard.policy): put them in a user mapping, or in vault '
                     'with api_key_id or api_key_name.' END;
  END IF;
END
$$;

-- Judges what a command created or altered: a user mapping or a foreign table alone, or a
-- server with all its user mappings and foreign tables (its wrapper may just have changed).
CREATE OR REPLACE FUNCTION cognito_fdw_guard.check_server(server_oid oid, classid oid, objid oid)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog
AS $$
DECLARE
  srv record;
  um record;
  ft record;
BEGIN
  SELECT s.srvname, s.srvoptions,
         coalesce((SELECT split_part(split_part(o, '=', 2), '.', 1) = 'cognito_fdw'
                     FROM unnest(s.srvoptions) o WHERE o LIKE 'wrapper=%'), false) AS ours,
         h.proname = 'multicorn_handler' AS multicorn
    INTO srv
    FROM pg_foreign_server s
    JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
    LEFT JOIN pg_proc h ON h.oid = w.fdwhandler
   WHERE s.oid = server_oid;
  IF NOT FOUND OR NOT coalesce(srv.multicorn, false) THEN
    RETURN;
  END IF;
  FOR um IN SELECT m.umuser, m.umoptions FROM pg_user_mapping m
             WHERE m.umserver = server_oid
               AND (classid = 'pg_foreign_server'::regclass OR m.oid = objid) LOOP
    IF EXISTS (SELECT FROM unnest(um.umoptions) o WHERE o LIKE 'wrapper=%') THEN
      RAISE EXCEPTION 'cognito_fdw: a user mapping for server % may not set wrapper',
        srv.srvname
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The wrapper class is chosen by the server''s owner, on the server.';
    END IF;
    IF srv.ours THEN
      PERFORM cognito_fdw_guard.check_options(
        format('user mapping for %s on server %I',
               CASE um.umuser WHEN 0 THEN 'PUBLIC' ELSE um.umuser::regrole::text END,
               srv.srvname),
        um.umoptions, 'user mapping');
    END IF;
  END LOOP;
  IF srv.ours AND classid = 'pg_foreign_server'::regclass THEN
    PERFORM cognito_fdw_guard.check_options(
      format('server %I', srv.srvname), srv.srvoptions, 'server');
  END IF;
  IF srv.ours THEN
    FOR ft IN SELECT t.ftrelid, t.ftoptions FROM pg_foreign_table t
               WHERE t.ftserver = server_oid
                 AND (classid = 'pg_foreign_server'::regclass OR t.ftrelid = objid) LOOP
      PERFORM cognito_fdw_guard.check_options(
        format('foreign table %s on server %I', ft.ftrelid::regclass, srv.srvname),
        ft.ftoptions, 'table');
    END LOOP;
  END IF;
END
$$;

-- SECURITY DEFINER: pg_user_mapping (user-mapping options) is readable only by superusers.
CREATE OR REPLACE FUNCTION cognito_fdw_guard.on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
AS $$
DECLARE
  cmd record;
  server_oid oid;
BEGIN
  FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    server_oid := CASE cmd.classid
      WHEN 'pg_foreign_server'::regclass THEN cmd.objid
      WHEN 'pg_user_mapping'::regclass THEN
        (SELECT m.umserver FROM pg_user_mapping m WHERE m.oid = cmd.objid)
      WHEN 'pg_class'::regclass THEN
        (SELECT t.ftserver FROM pg_foreign_table t WHERE t.ftrelid = cmd.objid)
    END;
    IF server_oid IS NOT NULL THEN
      PERFORM cognito_fdw_guard.check_server(server_oid, cmd.classid, cmd.objid);
    END IF;
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION cognito_fdw_guard.on_ddl() FROM PUBLIC;

DROP EVENT TRIGGER IF EXISTS cognito_fdw_guard;
CREATE EVENT TRIGGER cognito_fdw_guard ON ddl_command_end
  WHEN TAG IN ('CREATE SERVER', 'ALTER SERVER', 'CREATE USER MAPPING', 'ALTER USER MAPPING',
               'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'IMPORT FOREIGN SCHEMA')
  EXECUTE FUNCTION cognito_fdw_guard.on_ddl();
RESET client_min_messages;
