-- sync.sql: an app's users and roles in PostgreSQL, with each role mirrored into the
-- Cognito group of the same name.  The database is the source of truth for roles;
-- Cognito is the source of truth for who the users are.
--
--   psql [-v cognito_schema=cognito] -f sql/sync.sql
--
-- It needs, in schema :cognito_schema (default cognito), the foreign tables
--   users          (username, sub, email, phone_number)
--   group_members  (group_name, username, membership) with writable 'true'
-- which IMPORT FOREIGN SCHEMA creates:
--   IMPORT FOREIGN SCHEMA cognito FROM SERVER cognito_server INTO cognito
--     OPTIONS (writable 'true');
--
-- The functions below find those tables through their own search_path (that schema, then
-- public for citext) and name the app's tables as app.*, so an app.users and a
-- cognito.users never meet.  To move the foreign tables, re-run this file with the new
-- -v cognito_schema.
--
-- What it creates (schema app):
--   app.users, app.roles, app.user_roles
--   app.cognito_users         a foreign table on the same server as users, with sub as text
--                             (sub LIKE '0%' is a ListUsers prefix filter only on text,
--                             whatever type the users table gives sub)
--   app.sync_users(part text DEFAULT '')
--                             Cognito users into app.users: new ones by sub, changed
--                             email/phone/username updated; returns the counts.  With a
--                             part ('0' .. 'f'), only the users whose sub starts with it
--   app.sync_parts            per part: the round it last synced in, when, its counts, and
--                             its last error
--   CALL app.sync_users_in_parts(max_parts integer DEFAULT 16)
--                             the pool synced one part per transaction, resuming where the
--                             last call stopped; for large pools and pg_cron.  A NOTICE
--                             per part says where the call stands
--   app.user_for_sub(sub uuid)
--                             the app's row for a sub, created from one Cognito lookup the
--                             first time; no Cognito request once it exists
--   triggers on app.user_roles granting a role adds the user to the role's group and
--                             revoking it removes them, both at COMMIT (never on ROLLBACK)
--   app.reconcile_roles(repair boolean DEFAULT true)
--                             the drift between app.user_roles and the role groups in
--                             Cognito, both ways; with repair, Cognito is made to match the
--                             database at the caller's COMMIT
-- Each role's group must exist in Cognito (CreateGroup): a grant of a role without one
-- fails at COMMIT, naming the group.  Renaming a role does not rename its group.

\set ON_ERROR_STOP on
\if :{?cognito_schema}
\else
  \set cognito_schema cognito
\endif

SELECT to_regclass(format('%I.users', :'cognito_schema')) IS NOT NULL
   AND to_regclass(format('%I.group_members', :'cognito_schema')) IS NOT NULL AS have_tables
\gset
\if :have_tables
\else
  \warn 'sync.sql: foreign tables users and group_members not found in schema' :cognito_schema
  DO $$ BEGIN RAISE EXCEPTION USING
    MESSAGE = 'sync.sql: foreign tables users and group_members not found',
    HINT = 'Run IMPORT FOREIGN SCHEMA cognito FROM SERVER <server> INTO <schema> '
           'OPTIONS (writable ''true''), then psql -v cognito_schema=<schema> -f sync.sql.';
  END $$;
\endif

CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA IF NOT EXISTS app;

CREATE TABLE IF NOT EXISTS app.users (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sub        uuid NOT NULL UNIQUE,          -- Cognito's immutable user id
  username   text NOT NULL UNIQUE,          -- what Cognito's group APIs take
  email      citext,
  phone      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS app.roles (
  id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE                 -- the Cognito group's name
);

CREATE TABLE IF NOT EXISTS app.user_roles (
  user_id bigint NOT NULL REFERENCES app.users ON DELETE CASCADE,
  role_id bigint NOT NULL REFERENCES app.roles ON DELETE CASCADE,
  PRIMARY KEY (user_id, role_id)
);

-- app.cognito_users: the users foreign table again, on its server and with its table
-- options (writable aside: nothing here writes users), but with sub as text.  Dropped and
-- created anew, so that re-running this file with another -v cognito_schema follows it.
DROP FOREIGN TABLE IF EXISTS app.cognito_users;
SELECT format(
  'CREATE FOREIGN TABLE app.cognito_users (username text, sub text, email text, '
  'phone_number text) SERVER %I OPTIONS (%s)',
  s.srvname,
  (SELECT string_agg(format('%I %L', o.option_name, o.option_value), ', ')
   FROM pg_options_to_table(t.ftoptions) o WHERE o.option_name <> 'writable'))
FROM pg_foreign_table t JOIN pg_foreign_server s ON s.oid = t.ftserver
WHERE t.ftrelid = format('%I.users', :'cognito_schema')::regclass
\gexec

-- Cognito users into app.users: the whole pool (part '') or the users whose sub starts
-- with part ('0' .. 'f'; one ListUsers scan with Filter sub ^= "<part>", 60 users a
-- request).  Users gone from Cognito (in app.users, within the part, not in Cognito) are
-- counted, not deleted or marked: the app decides what that means.  A Cognito user whose
-- username another sub still holds in app.users fails the insert (username is unique).
DROP FUNCTION IF EXISTS app.sync_users();  -- the form without a part, before parts
CREATE OR REPLACE FUNCTION app.sync_users(part text DEFAULT '',
  OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT missing_in_cognito bigint)
LANGUAGE plpgsql
SET search_path = :"cognito_schema", public
AS $$
DECLARE
  -- The part's subs as a uuid range, so app.users is read through its index.
  v_lo uuid;
  v_hi uuid;
BEGIN
  IF part IS NULL OR part !~ '^[0-9a-f]?$' THEN
    RAISE EXCEPTION 'app.sync_users: part % is not one hex digit', quote_nullable(part)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give ''0'' .. ''f'' (lowercase) for the users whose sub starts with it, '
                   'or '''' (the default) for the whole pool.';
  END IF;
  IF part <> '' THEN
    v_lo := (part || '0000000-0000-0000-0000-000000000000')::uuid;
    IF part <> 'f' THEN
      v_hi := (to_hex(('x' || part)::bit(4)::int + 1)
               || '0000000-0000-0000-0000-000000000000')::uuid;
    END IF;
  END IF;

  CREATE TEMP TABLE IF NOT EXISTS pg_temp.cognito_sync_users
    (sub uuid PRIMARY KEY, username text, email text, phone text) ON COMMIT DROP;
  TRUNCATE pg_temp.cognito_sync_users;
  -- The prefix as a literal (not a parameter), so that every call's plan pushes it.
  EXECUTE format(
    'INSERT INTO pg_temp.cognito_sync_users '
    'SELECT u.sub::uuid, u.username, u.email, u.phone_number FROM app.cognito_users u '
    'WHERE %s',
    CASE WHEN part = '' THEN 'u.sub IS NOT NULL' ELSE format('u.sub LIKE %L', part || '%') END);

  WITH ins AS (
    INSERT INTO app.users (sub, username, email, phone)
    SELECT c.sub, c.username, c.email, c.phone
    FROM pg_temp.cognito_sync_users c
    WHERE NOT EXISTS (SELECT 1 FROM app.users a WHERE a.sub = c.sub)
    RETURNING 1)
  SELECT count(*) INTO inserted FROM ins;

  -- Compared as text: citext would call a change of case no change.
  WITH upd AS (
    UPDATE app.users a
    SET email = c.email, phone = c.phone, username = c.username, updated_at = now()
    FROM pg_temp.cognito_sync_users c
    WHERE a.sub = c.sub
      AND (a.email::text IS DISTINCT FROM c.email
           OR a.phone IS DISTINCT FROM c.phone
           OR a.username IS DISTINCT FROM c.username)
    RETURNING 1)
  SELECT count(*) INTO updated FROM upd;

  SELECT count(*) - inserted - updated INTO unchanged FROM pg_temp.cognito_sync_users;
  SELECT count(*) INTO missing_in_cognito FROM app.users a
  WHERE (v_lo IS NULL OR a.sub >= v_lo) AND (v_hi IS NULL OR a.sub < v_hi)
    AND NOT EXISTS (SELECT 1 FROM pg_temp.cognito_sync_users c WHERE c.sub = a.sub);
  RAISE NOTICE 'app.sync_users%: % inserted, % updated, % unchanged, % missing in Cognito',
    CASE WHEN part = '' THEN '' ELSE format(' (part %s)', part) END,
    inserted, updated, unchanged, missing_in_cognito;
END
$$;

-- The 16 parts of the pool by the first hex digit of sub (disjoint, together every user),
-- and where app.sync_users_in_parts() stands.  A round is one pass over all 16 parts: a
-- part whose round is below the highest round is still to do in the current one.
CREATE TABLE IF NOT EXISTS app.sync_parts (
  part               text PRIMARY KEY CHECK (part ~ '^[0-9a-f]$'),
  round              bigint NOT NULL DEFAULT 0,  -- the last round the part synced in
  synced_at          timestamptz,       -- when that sync began: Cognito as of then
  seconds            double precision,  -- how long it took
  users              bigint,            -- the part's users in Cognito then
  inserted           bigint,
  updated            bigint,
  missing_in_cognito bigint,            -- in app.users, within the part, gone from Cognito
  failures           integer NOT NULL DEFAULT 0,  -- failed attempts since it last synced
  failed_at          timestamptz,       -- the last of them; NULL once the part syncs
  error              text               -- its message; NULL once the part syncs
);
INSERT INTO app.sync_parts (part)
SELECT to_hex(i) FROM generate_series(0, 15) i
ON CONFLICT DO NOTHING;

-- The pool synced part by part, each part in a transaction of its own (COMMIT after each),
-- so a large pool never holds one long transaction and an interruption loses one part at
-- most.  Each call works on the current round: the parts not yet synced in it, in order,
-- at most max_parts of them; when none is left, the next call starts a new round.  So an
-- interrupted call (cancel, statement_timeout, lost connection) is resumed by the next
-- one: no part of a round is read twice, none is skipped.  A part that fails (a Cognito
-- error, a username conflict) is recorded in app.sync_parts and reported by a WARNING; the
-- call goes on with the other parts, and the next call retries it (the round stays open
-- until it syncs).  A cancel or timeout ends the call at once.  Calls running at the same
-- time share the work: each part is locked while it syncs, and skipped by the others.
-- Requests stay under the wrapper's cap (max_requests_per_second: one budget per account).
-- Procedures that COMMIT take no SET clause: every name below is schema-qualified.
-- CALL it outside a transaction block (COMMIT inside one is an error).
CREATE OR REPLACE PROCEDURE app.sync_users_in_parts(max_parts integer DEFAULT 16)
LANGUAGE plpgsql
AS $$
DECLARE
  v_round   bigint;
  v_part    text;
  v_tried   text[] := '{}';  -- at most 16: this call's parts, each attempted once
  v_started timestamptz;
  v_synced  integer := 0;
  v_failed  integer := 0;
  v_left    integer;
  v_message text;
  v_ok      boolean;
  r         record;
BEGIN
  IF max_parts IS NULL OR max_parts < 1 THEN
    RAISE EXCEPTION 'app.sync_users_in_parts: max_parts must be 1 or more, not %',
      quote_nullable(max_parts)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give how many of the 16 parts one call may sync (16: a whole round).';
  END IF;
  SELECT max(p.round) INTO v_round FROM app.sync_parts p;
  IF NOT EXISTS (SELECT 1 FROM app.sync_parts p WHERE p.round < v_round) THEN
    v_round := v_round + 1;  -- the last round is complete: start the next one
  END IF;
  COMMIT;

  WHILE cardinality(v_tried) < max_parts LOOP
    SELECT p.part INTO v_part FROM app.sync_parts p
    WHERE p.round < v_round AND p.part <> ALL (v_tried)
    ORDER BY p.part LIMIT 1
    FOR UPDATE SKIP LOCKED;
    EXIT WHEN NOT FOUND;
    v_tried := v_tried || v_part;
    v_started := clock_timestamp();
    BEGIN
      SELECT * INTO r FROM app.sync_users(v_part);
      UPDATE app.sync_parts p
      SET round = v_round, synced_at = v_started,
          seconds = extract(epoch FROM clock_timestamp() - v_started),
          users = r.inserted + r.updated + r.unchanged, inserted = r.inserted,
          updated = r.updated, missing_in_cognito = r.missing_in_cognito,
          failures = 0, failed_at = NULL, error = NULL
      WHERE p.part = v_part;
      v_synced := v_synced + 1;
      v_ok := true;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
      -- The wrapper reports a cancel or timeout that came while it waited for Cognito as
      -- an ordinary error (SQLSTATE XX000, which OTHERS catches).  PostgreSQL would end the
      -- call at its next interrupt check anyway; re-raised here, the cancel is never
      -- recorded as a failure of the part.
      IF v_message LIKE 'canceling statement%' THEN
        RAISE;
      END IF;
      UPDATE app.sync_parts p
      SET failures = p.failures + 1, failed_at = v_started, error = v_message
      WHERE p.part = v_part;
      v_failed := v_failed + 1;
      v_ok := false;
      RAISE WARNING 'app.sync_users_in_parts: part % failed, to be retried by the next call: %',
        v_part, v_message;
    END;
    COMMIT;
    -- Where the call stands, once per part (a sign of life for a long round; plpgsql's
    -- NOTICE is safe, unlike one from the wrapper with a cancel pending).
    SELECT count(*) INTO v_left FROM app.sync_parts p WHERE p.round < v_round;
    RAISE NOTICE 'app.sync_users_in_parts: round %, part % %: % s; % parts done this call, '
      '% left in the round', v_round, v_part,
      CASE WHEN v_ok THEN format('synced, %s users', r.inserted + r.updated + r.unchanged)
           ELSE 'failed' END,
      round(extract(epoch FROM clock_timestamp() - v_started)::numeric, 1),
      cardinality(v_tried), v_left;
  END LOOP;

  SELECT count(*) INTO v_left FROM app.sync_parts p WHERE p.round < v_round;
  RAISE NOTICE 'app.sync_users_in_parts: round %: % parts synced, % failed, % left',
    v_round, v_synced, v_failed, v_left;
END
$$;

-- The app's row for a sub (from the caller's verified token).  The first time, one Cognito
-- lookup (ListUsers with Filter sub = "<sub>", one request) creates it; once it exists, no
-- Cognito request at all.  Concurrent first calls for one sub wait for each other (an
-- advisory lock per sub, until the first caller's transaction ends), so they make one
-- request and one row, and raise nothing.  A sub Cognito does not know raises
-- no_data_found (P0002), and each such call asks Cognito again (nothing is cached).
CREATE OR REPLACE FUNCTION app.user_for_sub(sub uuid) RETURNS app.users
LANGUAGE plpgsql
SET search_path = :"cognito_schema", public
AS $$
DECLARE
  v_user app.users;
BEGIN
  IF user_for_sub.sub IS NULL THEN
    RAISE EXCEPTION 'app.user_for_sub: sub is NULL'
      USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the sub claim of the caller''s verified Cognito token.';
  END IF;
  SELECT * INTO v_user FROM app.users a WHERE a.sub = user_for_sub.sub;
  IF FOUND THEN
    RETURN v_user;
  END IF;

  PERFORM pg_advisory_xact_lock(hashtext('app.user_for_sub'), hashtext(user_for_sub.sub::text));
  SELECT * INTO v_user FROM app.users a WHERE a.sub = user_for_sub.sub;
  IF FOUND THEN
    RETURN v_user;  -- a concurrent first call created it while this one waited
  END IF;
  -- The sub as a literal, so that every call's plan pushes it (sub = "<sub>").
  EXECUTE format(
    'INSERT INTO app.users (sub, username, email, phone) '
    'SELECT u.sub::uuid, u.username, u.email, u.phone_number FROM app.cognito_users u '
    'WHERE u.sub = %L ON CONFLICT (sub) DO NOTHING', user_for_sub.sub::text);
  SELECT * INTO v_user FROM app.users a WHERE a.sub = user_for_sub.sub;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'app.user_for_sub: no user with sub % in Cognito', user_for_sub.sub
      USING ERRCODE = 'no_data_found',
            HINT = 'The token is from another user pool, or the user was deleted.';
  END IF;
  RETURN v_user;
END
$$;

-- A grant or revoke becomes a pending group_members change, sent at COMMIT.
CREATE OR REPLACE FUNCTION app.user_roles_to_cognito() RETURNS trigger
LANGUAGE plpgsql
SET search_path = :"cognito_schema", public
AS $$
DECLARE
  v_group text;
  v_user  text;
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    SELECT name INTO v_group FROM app.roles WHERE id = OLD.role_id;
    SELECT username INTO v_user FROM app.users WHERE id = OLD.user_id;
    -- One AdminListGroupsForUser: the scan reads the user's groups, not the group's members.
    DELETE FROM group_members WHERE group_name = v_group AND username = v_user;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO group_members (group_name, username)
    SELECT r.name, u.username FROM app.roles r, app.users u
    WHERE r.id = NEW.role_id AND u.id = NEW.user_id;
    RETURN NEW;
  END IF;
  RETURN OLD;
END
$$;

DROP TRIGGER IF EXISTS user_roles_to_cognito ON app.user_roles;
CREATE TRIGGER user_roles_to_cognito
  AFTER INSERT OR UPDATE OR DELETE ON app.user_roles
  FOR EACH ROW EXECUTE FUNCTION app.user_roles_to_cognito();

-- Deleting a user or a role revokes its grants first, while the trigger above can still
-- read the user's name and the role's name (ON DELETE CASCADE runs after they are gone).
CREATE OR REPLACE FUNCTION app.revoke_before_delete() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF TG_TABLE_NAME = 'users' THEN
    DELETE FROM app.user_roles WHERE user_id = OLD.id;
  ELSE
    DELETE FROM app.user_roles WHERE role_id = OLD.id;
  END IF;
  RETURN OLD;
END
$$;

DROP TRIGGER IF EXISTS revoke_before_delete ON app.users;
CREATE TRIGGER revoke_before_delete BEFORE DELETE ON app.users
  FOR EACH ROW EXECUTE FUNCTION app.revoke_before_delete();
DROP TRIGGER IF EXISTS revoke_before_delete ON app.roles;
CREATE TRIGGER revoke_before_delete BEFORE DELETE ON app.roles
  FOR EACH ROW EXECUTE FUNCTION app.revoke_before_delete();

-- Drift between app.user_roles and the roles' groups in Cognito (groups that are not
-- roles are left alone).  'add': granted in the database, missing in Cognito; 'remove':
-- in Cognito, not granted.  Reads one ListUsersInGroup per role (60 members a request).
CREATE OR REPLACE FUNCTION app.reconcile_roles(repair boolean DEFAULT true)
RETURNS TABLE (action text, group_name text, username text)
LANGUAGE plpgsql
SET search_path = :"cognito_schema", public
AS $$
DECLARE
  v_roles text[] := ARRAY(SELECT r.name FROM app.roles r ORDER BY r.name);
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS pg_temp.cognito_reconcile
    (action text, group_name text, username text) ON COMMIT DROP;
  TRUNCATE pg_temp.cognito_reconcile;
  CREATE TEMP TABLE IF NOT EXISTS pg_temp.cognito_members
    (group_name text, username text) ON COMMIT DROP;
  TRUNCATE pg_temp.cognito_members;
  -- Arrays as literals, never as parameters: Multicorn converts an array parameter under
  -- EXPLAIN (auto_explain of nested statements) from an empty value and crashes the server
  -- (docs/multicorn.md H1: EXPLAIN of a by-reference parameter crashes).
  EXECUTE format(
    'INSERT INTO pg_temp.cognito_members SELECT m.group_name, m.username FROM group_members m '
    'WHERE m.group_name = ANY (%L::text[])', v_roles);
  INSERT INTO pg_temp.cognito_reconcile
  WITH wanted AS (
    SELECT r.name AS group_name, u.username
    FROM app.user_roles ur
    JOIN app.roles r ON r.id = ur.role_id
    JOIN app.users u ON u.id = ur.user_id),
  actual AS (SELECT m.group_name, m.username FROM pg_temp.cognito_members m)
  SELECT 'add', w.group_name, w.username FROM wanted w
  WHERE NOT EXISTS (
    SELECT 1 FROM actual a WHERE a.group_name = w.group_name AND a.username = w.username)
  UNION ALL
  SELECT 'remove', a.group_name, a.username FROM actual a
  WHERE NOT EXISTS (
    SELECT 1 FROM wanted w WHERE w.group_name = a.group_name AND w.username = a.username);

  IF repair THEN
    INSERT INTO group_members (group_name, username)
    SELECT c.group_name, c.username FROM pg_temp.cognito_reconcile c WHERE c.action = 'add';
    EXECUTE format('DELETE FROM group_members m WHERE m.membership = ANY (%L::text[])',
      ARRAY(SELECT json_build_array(c.group_name, c.username)::text
            FROM pg_temp.cognito_reconcile c WHERE c.action = 'remove'));
  END IF;
  RETURN QUERY SELECT c.action, c.group_name, c.username FROM pg_temp.cognito_reconcile c
    ORDER BY c.group_name, c.username, c.action;
END
$$;
