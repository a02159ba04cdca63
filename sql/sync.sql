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
--   app.sync_users()          Cognito users into app.users: new ones by sub, changed
--                             email/phone/username updated; returns the counts
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

-- Cognito users into app.users.  One ListUsers scan of the whole pool (60 users a request);
-- users gone from Cognito are counted, not deleted: the app decides what that means.
CREATE OR REPLACE FUNCTION app.sync_users(
  OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT missing_in_cognito bigint)
LANGUAGE plpgsql
SET search_path = :"cognito_schema", public
AS $$
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS pg_temp.cognito_sync_users
    (sub uuid PRIMARY KEY, username text, email text, phone text) ON COMMIT DROP;
  TRUNCATE pg_temp.cognito_sync_users;
  INSERT INTO pg_temp.cognito_sync_users
    SELECT u.sub::uuid, u.username, u.email, u.phone_number FROM users u WHERE u.sub IS NOT NULL;

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
  WHERE NOT EXISTS (SELECT 1 FROM pg_temp.cognito_sync_users c WHERE c.sub = a.sub);
  RAISE NOTICE 'app.sync_users: % inserted, % updated, % unchanged, % missing in Cognito',
    inserted, updated, unchanged, missing_in_cognito;
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
  INSERT INTO pg_temp.cognito_reconcile
  WITH wanted AS (
    SELECT r.name AS group_name, u.username
    FROM app.user_roles ur
    JOIN app.roles r ON r.id = ur.role_id
    JOIN app.users u ON u.id = ur.user_id),
  actual AS MATERIALIZED (
    SELECT m.group_name, m.username FROM group_members m WHERE m.group_name = ANY (v_roles))
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
    DELETE FROM group_members m
    WHERE m.membership = ANY (ARRAY(
      SELECT json_build_array(c.group_name, c.username)::text
      FROM pg_temp.cognito_reconcile c WHERE c.action = 'remove'));
  END IF;
  RETURN QUERY SELECT c.action, c.group_name, c.username FROM pg_temp.cognito_reconcile c
    ORDER BY c.group_name, c.username, c.action;
END
$$;
