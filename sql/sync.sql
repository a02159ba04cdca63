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
-- It copies those two foreign tables into schema app (app.cognito_users and
-- app.cognito_group_members: same server, same options), so every function below names only
-- app.* and pg_catalog objects.  To move the foreign tables, re-run this file with the new
-- -v cognito_schema.
--
-- Safe to run as a superuser where other roles can create objects (in public, in pg_temp):
-- the script and every function run with search_path pg_catalog, pg_temp (pg_temp last,
-- so a temporary object never stands in for another; no schema another role may write),
-- and the procedure, which may take no SET clause, qualifies every function, operator and type.
-- What runs before the script pins that path (CREATE EXTENSION citext takes the caller's)
-- qualifies every function and operator too: a database's owner sets the path every
-- session of it starts with (ALTER DATABASE ... SET search_path), a superuser's too.
-- Schema app must be this role's own or a superuser's, with CREATE for no one else, and the
-- foreign tables it copies, their schema and their server too: the script refuses otherwise.
--
-- What it creates (schema app):
--   app.users, app.roles, app.user_roles
--   app.cognito_users         a foreign table on the same server as users, with sub as text
--                             (sub LIKE '0%' is a ListUsers prefix filter only on text,
--                             whatever type the users table gives sub)
--   app.cognito_group_members the group_members foreign table, on its server and options
--   app.sync_users(part text DEFAULT '')
--                             Cognito users into app.users: new ones by sub, changed
--                             email/phone/username updated; returns the counts.  With a
--                             part ('0' .. 'f'), only the users whose sub starts with it.
--                             A username Cognito now gives a new sub (the user deleted
--                             and signed up again under the same name) is released by the
--                             old sub's row first: see "A username reused" below
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
--
-- A username reused: Cognito's usernames are unique at any one time, not over time.  When
-- a sync (or app.user_for_sub) meets a Cognito user whose username another sub's row still
-- holds, that other sub is gone from Cognito (or holds the name no more), and its row gives
-- the name up: username becomes NULL, and its id, sub, email, phone and roles stay, so what
-- refers to it still does.  Its roles are not sent to Cognito again (a row without a
-- username is in no group: granting it a role fails, revoking one sends nothing, and
-- reconcile_roles leaves it out), and they never pass to the new sub, which gets a row of
-- its own with no roles.  Delete the old row when the app no longer needs it.

\set ON_ERROR_STOP on
\if :{?cognito_schema}
\else
  \set cognito_schema cognito
\endif

SELECT pg_catalog.to_regclass(pg_catalog.format('%I.users', :'cognito_schema')) IS NOT NULL
   AND pg_catalog.to_regclass(pg_catalog.format('%I.group_members', :'cognito_schema'))
       IS NOT NULL AS have_tables
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

-- The two foreign tables this script copies, their schema and their server must be this
-- role's or a superuser's: another role that owns any of them chose what they answer (its
-- server's endpoint and pool) or may swap them (a schema's owner drops any table in it),
-- and app.users would mirror its answers and app.user_roles send grants to its server.
SELECT COALESCE(pg_catalog.string_agg(pg_catalog.format('%s %s (owned by %s)',
         o.what, o.name, r.rolname), ', '), '') AS foreign_found
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  LEFT JOIN pg_catalog.pg_foreign_table t ON t.ftrelid OPERATOR(pg_catalog.=) c.oid
  LEFT JOIN pg_catalog.pg_foreign_server s ON s.oid OPERATOR(pg_catalog.=) t.ftserver
  CROSS JOIN LATERAL (VALUES
    ('table', pg_catalog.format('%I.%I', n.nspname, c.relname), c.relowner),
    ('schema', pg_catalog.quote_ident(n.nspname), n.nspowner),
    ('server', pg_catalog.quote_ident(s.srvname), s.srvowner)) o(what, name, owner)
  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) o.owner
 WHERE c.oid OPERATOR(pg_catalog.=) ANY (ARRAY[
         pg_catalog.to_regclass(pg_catalog.format('%I.users', :'cognito_schema')),
         pg_catalog.to_regclass(pg_catalog.format('%I.group_members', :'cognito_schema'))])
   AND NOT r.rolsuper AND r.rolname OPERATOR(pg_catalog.<>) current_user \gset
SELECT :'foreign_found' OPERATOR(pg_catalog.=) '' AS foreign_tables_are_ours \gset
\if :foreign_tables_are_ours
\else
  -- Through a setting, not spliced into the DO block: a role's name may hold any text.
  SELECT pg_catalog.set_config('cognito_fdw.found', :'foreign_found', false) AS found \gset
  DO $$ BEGIN RAISE EXCEPTION USING
    -- No bare operator before the search_path is pinned: the database's owner may have
    -- set the path (ALTER DATABASE ... SET search_path = public, pg_catalog) and put its
    -- own ||(text, text) first, which ran here as the superuser.
    MESSAGE = pg_catalog.format('sync.sql: the foreign tables it copies are not a '
              'superuser''s or this role''s: %s', pg_catalog.current_setting('cognito_fdw.found')),
    DETAIL = 'Their owner chose what they answer (or may swap them): app.users would '
             'mirror its answers and grants would go to its server.',
    HINT = 'Import users and group_members from a server of this role''s into a schema of '
           'this role''s, and give that schema with -v cognito_schema=...';
  END $$;
\endif

-- CREATE EXTENSION puts citext in the first schema of the caller's search_path: by
-- default "$user", a schema named after the role running this, which a role with CREATE
-- on the database may have made.  As that schema's owner it may DROP SCHEMA ... CASCADE
-- (PostgreSQL checks no ownership of what a CASCADE takes): citext, and app.users.email
-- with it.  So the schema (an existing citext's, or the one it would go to) must be a
-- superuser's, or the database owner's (public on PostgreSQL 15: that owner may drop the
-- whole database anyway).  Qualified: the search_path is not pinned yet.
SELECT NOT EXISTS (
  SELECT FROM pg_catalog.pg_namespace n
    JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) n.nspowner
   WHERE n.oid OPERATOR(pg_catalog.=) COALESCE(
           (SELECT e.extnamespace FROM pg_catalog.pg_extension e
             WHERE e.extname OPERATOR(pg_catalog.=) 'citext'),
           (SELECT s.oid FROM pg_catalog.pg_namespace s
             WHERE s.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema()))
     AND NOT o.rolsuper AND o.rolname OPERATOR(pg_catalog.<>) 'pg_database_owner'
) AS citext_schema_is_safe \gset
\if :citext_schema_is_safe
\else
  DO $$ BEGIN RAISE EXCEPTION USING
    MESSAGE = 'sync.sql: extension citext is, or would be created, in a schema another '
              'role that is not a superuser owns',
    DETAIL = 'As its owner that role may DROP SCHEMA ... CASCADE, which takes citext and '
             'app.users.email with it.',
    HINT = 'As a superuser: CREATE EXTENSION citext SCHEMA public (or ALTER EXTENSION '
           'citext SET SCHEMA public), then run the script again.';
  END $$;
\endif
CREATE EXTENSION IF NOT EXISTS citext;
-- From here on, no name resolves to another role's object (see the top of the file).
SET search_path = pg_catalog, pg_temp;
-- The extension must be a superuser's: citext is trusted, so a role with CREATE
-- on the database may have created it first, in a schema of its own; as its owner it
-- could drop it (CASCADE takes what depends on it) and put functions of its own under
-- the same names, which this script's objects call.
DO $check$
DECLARE
  found text;
BEGIN
  SELECT pg_catalog.string_agg(e.extname || ' (owned by ' || o.rolname || ')', ', ')
    INTO found
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles o ON o.oid = e.extowner
   WHERE e.extname IN ('citext') AND NOT o.rolsuper;
  IF found IS NOT NULL THEN
    RAISE EXCEPTION USING
      MESSAGE = 'sync.sql: extension ' || found || ' is not a superuser''s',
      DETAIL = 'Its owner may drop it and put functions of its own where this script''s '
               'objects look for it.',
      HINT = 'As a superuser, drop the extension if nothing else needs it, and run the '
             'script again (it creates the extension as this role''s).';
  END IF;
END
$check$;
SELECT n.nspname AS citext_schema FROM pg_extension e
  JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'citext' \gset
CREATE SCHEMA IF NOT EXISTS app;
SELECT NOT EXISTS (
  SELECT FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner
   WHERE n.nspname = 'app' AND (o.rolname <> current_user AND NOT o.rolsuper
         OR EXISTS (SELECT FROM pg_roles r
                     WHERE has_schema_privilege(r.oid, n.oid, 'CREATE')
                       AND NOT r.rolsuper AND r.oid <> n.nspowner
                       AND r.rolname <> current_user)
         OR has_schema_privilege('public', n.oid, 'CREATE'))) AS app_is_safe \gset
\if :app_is_safe
\else
  DO $$ BEGIN RAISE EXCEPTION USING
    MESSAGE = 'sync.sql: schema app is not safe to install into',
    DETAIL = 'It is owned by another role that is not a superuser, or another role may '
             'CREATE in it: its objects would run as whoever calls the sync.',
    HINT = 'ALTER SCHEMA app OWNER TO <this role>; REVOKE CREATE ON SCHEMA app FROM <them>.';
  END $$;
\endif

CREATE TABLE IF NOT EXISTS app.users (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sub        uuid NOT NULL UNIQUE,          -- Cognito's immutable user id
  username   text UNIQUE,                   -- what Cognito's group APIs take; NULL: given up
  email      :"citext_schema".citext,
  phone      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Installs from before usernames could be given up (A username reused, above).
ALTER TABLE app.users ALTER COLUMN username DROP NOT NULL;

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

-- app.cognito_group_members: the group_members foreign table again, on its server and with
-- its options (writable included), so the functions below name no other schema.
DROP FOREIGN TABLE IF EXISTS app.cognito_group_members;
SELECT format(
  'CREATE FOREIGN TABLE app.cognito_group_members (group_name text, username text, '
  'membership text) SERVER %I OPTIONS (%s)',
  s.srvname,
  (SELECT string_agg(format('%I %L', o.option_name, o.option_value), ', ')
   FROM pg_options_to_table(t.ftoptions) o))
FROM pg_foreign_table t JOIN pg_foreign_server s ON s.oid = t.ftserver
WHERE t.ftrelid = format('%I.group_members', :'cognito_schema')::regclass
\gexec

-- Cognito users into app.users: the whole pool (part '') or the users whose sub starts
-- with part ('0' .. 'f'; one ListUsers scan with Filter sub ^= "<part>", 60 users a
-- request).  Users gone from Cognito (in app.users, within the part, not in Cognito) are
-- counted, not deleted or marked: the app decides what that means.  A Cognito user whose
-- username another sub's row still holds takes it ("A username reused", above).
DROP FUNCTION IF EXISTS app.sync_users();  -- the form without a part, before parts
CREATE OR REPLACE FUNCTION app.sync_users(part text DEFAULT '',
  OUT inserted bigint, OUT updated bigint, OUT unchanged bigint, OUT missing_in_cognito bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- The part's subs as a uuid range, so app.users is read through its index.
  v_lo uuid;
  v_hi uuid;
  v_released bigint;
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

  -- A username Cognito now gives another sub is given up by the row still holding it (see
  -- "A username reused" at the top): the old sub is gone from Cognito, whatever its part.
  WITH released AS (
    UPDATE app.users a SET username = NULL, updated_at = now()
    FROM pg_temp.cognito_sync_users c
    WHERE a.username = c.username AND a.sub <> c.sub
    RETURNING a.sub)
  SELECT count(*) INTO v_released FROM released;
  IF v_released > 0 THEN
    RAISE NOTICE 'app.sync_users: % username(s) given up by subs no longer in Cognito under '
      'them (their rows and roles stay, without a username)', v_released;
  END IF;

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
-- Procedures that COMMIT take no SET clause: the procedure's steps are functions with
-- their own search_path, and the procedure itself qualifies every name it calls or declares.
-- CALL it outside a transaction block (COMMIT inside one is an error).
CREATE OR REPLACE FUNCTION app.sync_round(max_parts integer) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_round bigint;
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
  RETURN v_round;
END
$$;

-- The next part of the round not yet tried by this call (locked to the end of the
-- transaction; parts other calls hold are skipped), or NULL: none left, or max_parts tried.
CREATE OR REPLACE FUNCTION app.sync_next_part(v_round bigint, v_tried text[], max_parts integer)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_part text;
BEGIN
  IF cardinality(v_tried) >= max_parts THEN
    RETURN NULL;
  END IF;
  SELECT p.part INTO v_part FROM app.sync_parts p
  WHERE p.round < v_round AND p.part <> ALL (v_tried)
  ORDER BY p.part LIMIT 1
  FOR UPDATE SKIP LOCKED;
  RETURN v_part;
END
$$;

-- One part synced and recorded; a failure is recorded and reported, not raised.
CREATE OR REPLACE FUNCTION app.sync_part(v_part text, v_round bigint, v_started timestamptz,
  OUT ok boolean, OUT users bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r record;
  v_message text;
BEGIN
  SELECT * INTO r FROM app.sync_users(v_part);
  UPDATE app.sync_parts p
  SET round = v_round, synced_at = v_started,
      seconds = extract(epoch FROM clock_timestamp() - v_started),
      users = r.inserted + r.updated + r.unchanged, inserted = r.inserted,
      updated = r.updated, missing_in_cognito = r.missing_in_cognito,
      failures = 0, failed_at = NULL, error = NULL
  WHERE p.part = v_part;
  ok := true;
  users := r.inserted + r.updated + r.unchanged;
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
  ok := false;
  RAISE WARNING 'app.sync_users_in_parts: part % failed, to be retried by the next call: %',
    v_part, v_message;
END
$$;

-- Where the call stands, once per part (a sign of life for a long round; plpgsql's
-- NOTICE is safe, unlike one from the wrapper with a cancel pending).
CREATE OR REPLACE FUNCTION app.sync_progress(v_round bigint, v_part text, ok boolean,
  users bigint, v_started timestamptz, tried integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_left integer;
BEGIN
  SELECT count(*) INTO v_left FROM app.sync_parts p WHERE p.round < v_round;
  RAISE NOTICE 'app.sync_users_in_parts: round %, part % %: % s; % parts done this call, '
    '% left in the round', v_round, v_part,
    CASE WHEN ok THEN format('synced, %s users', users) ELSE 'failed' END,
    round(extract(epoch FROM clock_timestamp() - v_started)::numeric, 1),
    tried, v_left;
END
$$;

-- The call's last word.
CREATE OR REPLACE FUNCTION app.sync_summary(v_round bigint, synced integer, failed integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE NOTICE 'app.sync_users_in_parts: round %: % parts synced, % failed, % left',
    v_round, synced, failed,
    (SELECT count(*) FROM app.sync_parts p WHERE p.round < v_round);
END
$$;

CREATE OR REPLACE PROCEDURE app.sync_users_in_parts(max_parts pg_catalog.int4 DEFAULT 16)
LANGUAGE plpgsql
AS $$
DECLARE
  -- Types qualified too: a bare type name is looked up in the caller's search_path, the
  -- session's pg_temp first (a domain named text in public, with public first in the
  -- path, or in pg_temp, ran its CHECK as the caller at each assignment).
  v_round   pg_catalog.int8;
  v_part    pg_catalog.text;
  v_tried   pg_catalog.text[] := '{}';  -- at most 16: this call's parts, each attempted once
  v_started pg_catalog.timestamptz;
  v_synced  pg_catalog.int4 := 0;
  v_failed  pg_catalog.int4 := 0;
  r         pg_catalog.record;
BEGIN
  v_round := app.sync_round(max_parts);
  COMMIT;
  LOOP
    v_part := app.sync_next_part(v_round, v_tried, max_parts);
    EXIT WHEN v_part IS NULL;
    v_tried := pg_catalog.array_append(v_tried, v_part);
    v_started := pg_catalog.clock_timestamp();
    SELECT * INTO r FROM app.sync_part(v_part, v_round, v_started);
    IF r.ok THEN
      v_synced := v_synced OPERATOR(pg_catalog.+) 1;
    ELSE
      v_failed := v_failed OPERATOR(pg_catalog.+) 1;
    END IF;
    COMMIT;
    PERFORM app.sync_progress(v_round, v_part, r.ok, r.users, v_started,
                              pg_catalog.cardinality(v_tried));
  END LOOP;
  PERFORM app.sync_summary(v_round, v_synced, v_failed);
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
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_user app.users;
  v_username text;
  v_email text;
  v_phone text;
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
    'SELECT u.username, u.email, u.phone_number FROM app.cognito_users u WHERE u.sub = %L',
    user_for_sub.sub::text) INTO v_username, v_email, v_phone;
  IF v_username IS NOT NULL THEN
    -- Another sub's row holding this username gives it up ("A username reused").
    UPDATE app.users a SET username = NULL, updated_at = now()
    WHERE a.username = v_username AND a.sub <> user_for_sub.sub;
    INSERT INTO app.users (sub, username, email, phone)
    VALUES (user_for_sub.sub, v_username, v_email, v_phone)
    ON CONFLICT ON CONSTRAINT users_sub_key DO NOTHING;
  END IF;
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
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_group text;
  v_user  text;
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    SELECT name INTO v_group FROM app.roles WHERE id = OLD.role_id;
    SELECT username INTO v_user FROM app.users WHERE id = OLD.user_id;
    -- One AdminListGroupsForUser: the scan reads the user's groups, not the group's members.
    -- A row without a username (given up to a new sub) is in no group: nothing to send.
    DELETE FROM app.cognito_group_members WHERE group_name = v_group AND username = v_user;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    SELECT r.name, u.username INTO v_group, v_user FROM app.roles r, app.users u
    WHERE r.id = NEW.role_id AND u.id = NEW.user_id;
    IF v_user IS NULL THEN
      RAISE EXCEPTION 'app.user_roles: user % has no username: its sub is no longer in Cognito',
        NEW.user_id
        USING ERRCODE = 'foreign_key_violation',
              HINT = 'Its username went to a new sub (see sql/sync.sql, "A username reused"); '
                     'grant the role to that sub''s row.';
    END IF;
    INSERT INTO app.cognito_group_members (group_name, username) VALUES (v_group, v_user);
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
SET search_path = pg_catalog, pg_temp
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
SET search_path = pg_catalog, pg_temp
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
    'INSERT INTO pg_temp.cognito_members SELECT m.group_name, m.username '
    'FROM app.cognito_group_members m '
    'WHERE m.group_name = ANY (%L::text[])', v_roles);
  INSERT INTO pg_temp.cognito_reconcile
  WITH wanted AS (
    SELECT r.name AS group_name, u.username
    FROM app.user_roles ur
    JOIN app.roles r ON r.id = ur.role_id
    JOIN app.users u ON u.id = ur.user_id
    WHERE u.username IS NOT NULL),  -- a row that gave its username up is in no group
  actual AS (SELECT m.group_name, m.username FROM pg_temp.cognito_members m)
  SELECT 'add', w.group_name, w.username FROM wanted w
  WHERE NOT EXISTS (
    SELECT 1 FROM actual a WHERE a.group_name = w.group_name AND a.username = w.username)
  UNION ALL
  SELECT 'remove', a.group_name, a.username FROM actual a
  WHERE NOT EXISTS (
    SELECT 1 FROM wanted w WHERE w.group_name = a.group_name AND w.username = a.username);

  IF repair THEN
    INSERT INTO app.cognito_group_members (group_name, username)
    SELECT c.group_name, c.username FROM pg_temp.cognito_reconcile c WHERE c.action = 'add';
    EXECUTE format('DELETE FROM app.cognito_group_members m WHERE m.membership = ANY (%L::text[])',
      ARRAY(SELECT json_build_array(c.group_name, c.username)::text
            FROM pg_temp.cognito_reconcile c WHERE c.action = 'remove'));
  END IF;
  RETURN QUERY SELECT c.action, c.group_name, c.username FROM pg_temp.cognito_reconcile c
    ORDER BY c.group_name, c.username, c.action;
END
$$;

RESET search_path;
