-- vault: the part of Supabase Vault's interface cognito_fdw and its users need, for a
-- self-hosted PostgreSQL (15 or later; run as a superuser):
--
--   psql [-v vault_key_file=/var/lib/postgresql/vault.keys] -f sql/vault.sql
--
--   SELECT vault.create_secret('<secret access key>', 'cognito', 'Cognito reader key');  -- id
--   SELECT vault.update_secret('<id>', new_secret => '<new secret access key>');
--   SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'cognito';
--
-- Secrets are encrypted with pgcrypto (pgp_sym_encrypt, AES-256).  The key is not in the
-- database: it lives in a file of the database server's OS user, read with pg_read_file by
-- this script's functions, which run as its owner.  So pg_dump output, logical copies and
-- the table itself hold ciphertext only; keep the key file out of the data directory (base
-- backups copy that) and back it up apart from the database.  In a container the default
-- is inside the data directory, the one place that outlives it (the image's data volume);
-- a base backup of it then holds the key too (docs/docker.md).  The file's path is kept in
-- vault.key_file, which only the owner may read: no catalog, function body, view or message
-- another role can read names it (a file_fdw table's options would, in pg_foreign_table).
--
-- The key file has one line per key: a key number, a tab, the key.  Without it, this script
-- creates it (mode 0600, through COPY TO PROGRAM) with key 1, 32 random bytes in hex.  New
-- secrets use the highest number; each secret remembers its own.
--
-- Re-running this script over an install keeps its key file (the path it recorded, or the
-- filename of the file_fdw table vault.keys of an older install, which it then drops with
-- its server); -v vault_key_file naming another file is refused.
--
-- Rotating the key:
--   1. append a line with the next number and a new key, as the server's OS user:
--        printf '2\t%s\n' "$(openssl rand -hex 32)" >> /var/lib/postgresql/vault.keys
--   2. SELECT vault.rotate_key();   -- re-encrypts every secret under the highest key
--   3. delete the old line from the file (and from its backups, in time).
--
-- Who can read: nobody but the owner (the role running this script) and the roles it grants:
--   GRANT USAGE ON SCHEMA vault TO alice;
--   GRANT SELECT ON vault.decrypted_secrets TO alice;
-- (the view decrypts with vault._decrypt(), whose EXECUTE an event trigger keeps granted to
-- exactly the roles that may select the view: see there), and who can write: GRANT EXECUTE ON FUNCTION vault.create_secret, vault.update_secret ...
-- A failed create_secret or update_secret does not log its statement; but log_statement =
-- 'all' ('ddl' and 'mod' leave a SELECT out), a statement that fails before the function
-- runs (a syntax error, a malformed uuid) and auto_explain still record the secret: see the
-- docs/credentials.md, "Where a secret can still reach the server log".

\set ON_ERROR_STOP on
SET client_min_messages = warning;

-- One transaction: an upgrade that fails half-way leaves the install as it was.
BEGIN;

-- CREATE EXTENSION puts pgcrypto in the first schema of the caller's search_path: by
-- default "$user", a schema named after the role running this, which a role with CREATE
-- on the database may have made.  As that schema's owner it may DROP SCHEMA ... CASCADE
-- (PostgreSQL checks no ownership of what a CASCADE takes): pgcrypto, and the vault's
-- functions bound to it.  So the schema (an existing pgcrypto's, or the one it would go
-- to) must be a superuser's, or the database owner's (public on PostgreSQL 15: that owner
-- may drop the whole database anyway).  Qualified: the search_path is not pinned yet.
SELECT NOT EXISTS (
  SELECT FROM pg_catalog.pg_namespace n
    JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) n.nspowner
   WHERE n.oid OPERATOR(pg_catalog.=) COALESCE(
           (SELECT e.extnamespace FROM pg_catalog.pg_extension e
             WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto'),
           (SELECT s.oid FROM pg_catalog.pg_namespace s
             WHERE s.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema()))
     AND NOT o.rolsuper AND o.rolname OPERATOR(pg_catalog.<>) 'pg_database_owner'
) AS pgcrypto_schema_is_safe \gset
\if :pgcrypto_schema_is_safe
\else
  DO $$ BEGIN RAISE EXCEPTION USING
    MESSAGE = 'vault.sql: extension pgcrypto is, or would be created, in a schema another '
              'role that is not a superuser owns',
    DETAIL = 'As its owner that role may DROP SCHEMA ... CASCADE, which takes pgcrypto and '
             'the vault''s functions with it.',
    HINT = 'As a superuser: CREATE EXTENSION pgcrypto SCHEMA public (or ALTER EXTENSION '
           'pgcrypto SET SCHEMA public), then run the script again.';
  END $$;
\endif
CREATE EXTENSION IF NOT EXISTS pgcrypto;
-- From here on every name resolves in pg_catalog first and never in a schema another role
-- may create in (public, say: PostgreSQL 14 and older let every role): this script runs as
-- a superuser, and a role's format(text, name, text, text) in public would otherwise be a
-- closer match than pg_catalog's format(text, VARIADIC "any") and run as it.
SET search_path = pg_catalog, pg_temp;
-- pgcrypto must be a superuser's: it is trusted, so a role with CREATE on the
-- database may have created it first, in a schema of its own; as its owner it could drop it
-- (CASCADE takes the view with it) and put a pgp_sym_encrypt of its own in that schema,
-- which create_secret then called as the superuser with the secret and the key.
DO $check$
DECLARE
  found text;
BEGIN
  SELECT pg_catalog.string_agg(e.extname || ' (owned by ' || o.rolname || ')', ', ')
    INTO found
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles o ON o.oid = e.extowner
   WHERE e.extname = 'pgcrypto' AND NOT o.rolsuper;
  IF found IS NOT NULL THEN
    RAISE EXCEPTION USING
      MESSAGE = 'vault.sql: extension ' || found || ' is not a superuser''s',
      DETAIL = 'Its owner may drop it and put functions of its own where this script''s '
               'objects look for it.',
      HINT = 'As a superuser, drop the extension if nothing else needs it, and run the '
             'script again (it creates the extension as this role''s).';
  END IF;
END
$check$;

-- An existing schema vault: the functions below look names up in it before pgcrypto's
-- schema, vault.key_file in it says which file they read as a superuser, and this script
-- reads what is in it: one another role owns (it may drop and replace what is in it) or
-- may create in is refused before anything in it is read.
SELECT NOT EXISTS (
  SELECT FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner
   WHERE n.nspname = 'vault' AND (NOT o.rolsuper
         OR EXISTS (SELECT FROM pg_roles r
                     WHERE has_schema_privilege(r.oid, n.oid, 'CREATE')
                       AND NOT r.rolsuper AND r.oid <> n.nspowner)
         OR has_schema_privilege('public', n.oid, 'CREATE'))) AS vault_schema_is_safe \gset
\if :vault_schema_is_safe
\else
  DO $$ BEGIN RAISE EXCEPTION USING
    MESSAGE = 'vault.sql: schema vault is not safe to install into',
    DETAIL = 'It is owned by a role that is not a superuser, or a role that is not one may '
             'CREATE in it: its objects would run, or name the file read, as a superuser.',
    HINT = 'ALTER SCHEMA vault OWNER TO <a superuser>; REVOKE CREATE ON SCHEMA vault FROM '
           '<them>; or drop the schema if it is not the vault''s.';
  END $$;
\endif

-- The key file of an existing install: the path this script recorded, or an older
-- install's file_fdw table's filename.  It is kept: a new key file would leave every
-- secret undecryptable.
SELECT to_regclass('vault.key_file') IS NOT NULL AS vault_recorded \gset
\if :vault_recorded
  SELECT (SELECT f.path FROM vault.key_file f) AS vault_installed_key_file \gset
\else
  SELECT (SELECT substr(o, length('filename=') + 1)
            FROM pg_foreign_table t, unnest(t.ftoptions) o
           WHERE t.ftrelid = to_regclass('vault.keys') AND starts_with(o, 'filename='))
    AS vault_installed_key_file \gset
\endif

\if :{?vault_installed_key_file}
  \if :{?vault_key_file}
    SELECT format('DO %L', format(
        'BEGIN RAISE EXCEPTION USING MESSAGE = %L, DETAIL = %L, HINT = %L; END',
        'vault: this database''s vault already has its key file',
        format('It is %s; -v vault_key_file names %s.',
               :'vault_installed_key_file', :'vault_key_file'),
        'Leave -v vault_key_file out to keep it.  To move the key file, move it as the '
        'server''s OS user, then UPDATE vault.key_file SET path = ''<new path>'' as a '
        'superuser.'))
     WHERE :'vault_key_file' <> :'vault_installed_key_file' \gexec
  \else
    SELECT :'vault_installed_key_file' AS vault_key_file \gset
  \endif
\elif :{?vault_key_file}
\else
  -- Beside the data directory, not inside it; but in a container (the files Docker and
  -- Podman leave at its root) inside it, since the data volume is all that outlives the
  -- container (the official images' VOLUME is the data directory through 17).
  SELECT CASE
      WHEN (pg_stat_file('/.dockerenv', true)).size IS NOT NULL
        OR (pg_stat_file('/run/.containerenv', true)).size IS NOT NULL
      THEN current_setting('data_directory') || '/vault.keys'
      ELSE regexp_replace(current_setting('data_directory'), '/[^/]+/?$', '') || '/vault.keys'
    END AS vault_key_file \gset
\endif

-- The key file, created only when it is missing (never overwritten), readable by the
-- server's OS user alone: COPY TO a file would create it world-readable, so a shell with
-- umask 077 writes it.
SELECT format(
  'COPY (SELECT 1, encode(%I.gen_random_bytes(32), %L)) TO PROGRAM %L',
  (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pgcrypto'),
  'hex', 'umask 077 && cat > ''' || replace(:'vault_key_file', '''', '''\''''') || ''''
) WHERE pg_stat_file(:'vault_key_file', true) IS NULL \gexec

SELECT to_regnamespace('vault') IS NULL AS vault_fresh \gset
CREATE SCHEMA IF NOT EXISTS vault;
REVOKE ALL ON SCHEMA vault FROM PUBLIC;

-- Where the key file is, for the functions below (they run as its owner) and nobody else:
-- pg_class, pg_proc, pg_views and pg_foreign_table are every role's to read, this table is
-- not.  One row.
CREATE TABLE IF NOT EXISTS vault.key_file (
  path text NOT NULL,
  one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row)
);
REVOKE ALL ON vault.key_file FROM PUBLIC;
INSERT INTO vault.key_file (path) VALUES (:'vault_key_file') ON CONFLICT (one_row) DO NOTHING;

CREATE TABLE IF NOT EXISTS vault.secrets (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text UNIQUE,
  description text NOT NULL DEFAULT '',
  secret bytea NOT NULL,
  key_id int NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vault.secrets FROM PUBLIC;

-- Function bodies resolve names with this script's path (SET search_path FROM CURRENT):
-- pg_catalog first, pg_temp last (unlisted, it would be searched first), and nothing else.
-- Not pgcrypto's schema: that is public by default, where a database's owner may create,
-- and a name pg_catalog has only in a polymorphic or variadic form (int[] || int,
-- format(text, VARIADIC "any")) resolves to an exact-typed one there, which ran as the
-- vault's owner.  pgcrypto is called through these two, whose bodies (BEGIN ATOMIC) are
-- bound to its functions when they are created, not looked up by name at each call: on
-- PostgreSQL 15 public belongs to the database's owner, which may DROP SCHEMA public
-- CASCADE (pgcrypto goes with it) and put a pgp_sym_decrypt of its own there, which a
-- lookup by name, even a qualified one, then called with the key.  Bound, they go with
-- pgcrypto and the vault fails until this script runs again.
SELECT format($create$
CREATE OR REPLACE FUNCTION vault._encrypt(data text, key text) RETURNS bytea
LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT %1$I.pgp_sym_encrypt(data, key, 'cipher-algo=aes256, s2k-mode=1'::pg_catalog.text);
END
$create$, n.nspname), format($create$
CREATE OR REPLACE FUNCTION vault._decrypt_with(data bytea, key text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT %1$I.pgp_sym_decrypt(data, key);
END
$create$, n.nspname)
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pgcrypto' \gexec
REVOKE ALL ON FUNCTION vault._encrypt(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault._decrypt_with(bytea, text) FROM PUBLIC;

-- The key file's keys, read as this function's owner (a superuser: pg_read_file).  Each
-- line is a key number, a tab and the key; blank lines are skipped.  What it raises never
-- names the file (a reader of vault.decrypted_secrets may see it) nor shows a line of it (a
-- line holds a key).
CREATE OR REPLACE FUNCTION vault._keys() RETURNS TABLE (id int, key text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  file text := (SELECT f.path FROM vault.key_file f);
  content text;
  line text;
  number int := 0;
  seen int[] := '{}';
BEGIN
  IF file IS NULL THEN
    RAISE EXCEPTION 'vault: no key file is recorded in vault.key_file'
      USING HINT = 'Run sql/vault.sql again as a superuser.';
  END IF;
  BEGIN
    content := pg_read_file(file);
  EXCEPTION WHEN OTHERS THEN
    -- Why, with the path left out (missing, permission denied: the message names it, in
    -- double quotes, as PostgreSQL canonicalized it: not always as vault.key_file has it,
    -- so what is quoted goes); an invalid byte sequence's message would quote the file's
    -- bytes, so not that one.
    RAISE EXCEPTION 'vault: the key file cannot be read'
      USING DETAIL = CASE WHEN SQLSTATE = '22021'
                          THEN 'It is not text in the database''s encoding.'
                          ELSE regexp_replace(replace(SQLERRM, file, '<the key file>'),
                                              '".*"', '<the key file>') END,
            HINT = 'The vault''s owner finds its path in vault.key_file; see sql/vault.sql.';
  END;
  FOREACH line IN ARRAY string_to_array(content, E'\n') LOOP
    number := number + 1;
    line := rtrim(line, E'\r');
    CONTINUE WHEN line = '';
    IF line !~ E'^[0-9]{1,9}\t[^\t]+$' THEN
      RAISE EXCEPTION 'vault: line % of the key file is not a key number, a tab and a key',
        number USING HINT = 'The vault''s owner finds its path in vault.key_file; the line is '
                              'not shown (it may hold a key).';
    END IF;
    id := split_part(line, E'\t', 1)::int;
    IF id = ANY (seen) THEN
      RAISE EXCEPTION 'vault: key number % is in the key file twice', id;
    END IF;
    seen := seen || id;
    key := split_part(line, E'\t', 2);
    RETURN NEXT;
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION vault._keys() FROM PUBLIC;

CREATE OR REPLACE FUNCTION vault._current_key(OUT id int, OUT key text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
AS $$ SELECT k.id, k.key FROM vault._keys() k ORDER BY k.id DESC LIMIT 1 $$;
REVOKE ALL ON FUNCTION vault._current_key() FROM PUBLIC;

-- One secret, decrypted: what vault.decrypted_secrets shows of it, never the key.  It is
-- looked up by id (not handed a ciphertext), so a role that may call it decrypts only what
-- the view would show it, not a ciphertext from an old dump.
CREATE OR REPLACE FUNCTION vault._decrypt(secret_id uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
AS $$
  SELECT vault._decrypt_with(s.secret, k.key)
    FROM vault.secrets s JOIN vault._keys() k ON k.id = s.key_id
   WHERE s.id = secret_id
$$;
REVOKE ALL ON FUNCTION vault._decrypt(uuid) FROM PUBLIC;

-- The view decrypts with its owner's function, so a reader never holds the key.
CREATE OR REPLACE VIEW vault.decrypted_secrets AS
SELECT s.id, s.name, s.description, s.secret,
       vault._decrypt(s.id) AS decrypted_secret,
       s.key_id, s.created_at, s.updated_at
  FROM vault.secrets s;
REVOKE ALL ON vault.decrypted_secrets FROM PUBLIC;

-- PostgreSQL checks a function a view calls against the role querying the view, not the
-- view's owner: a role granted SELECT on vault.decrypted_secrets needs EXECUTE on
-- vault._decrypt too.  This keeps the two grants equal (either's owners aside), run after
-- every GRANT, REVOKE and DROP OWNED in the database, so granting the view is all it
-- takes, as in Supabase Vault.  It grants and revokes only EXECUTE on _decrypt, only to
-- match the view.
CREATE OR REPLACE FUNCTION vault._mirror_reader_grants() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  view_oid oid := to_regclass('vault.decrypted_secrets');
  decrypt oid := to_regprocedure('vault._decrypt(uuid)');
  change record;
BEGIN
  IF view_oid IS NULL OR decrypt IS NULL THEN
    RETURN;
  END IF;
  FOR change IN
    WITH owners AS (
      SELECT c.relowner AS role FROM pg_class c WHERE c.oid = view_oid
      UNION SELECT p.proowner FROM pg_proc p WHERE p.oid = decrypt
    ), readers AS (
      SELECT a.grantee FROM pg_class c, aclexplode(c.relacl) a
       WHERE c.oid = view_oid AND a.privilege_type = 'SELECT'
         AND a.grantee NOT IN (SELECT o.role FROM owners o)
    ), callers AS (
      SELECT a.grantee FROM pg_proc p, aclexplode(p.proacl) a
       WHERE p.oid = decrypt AND a.privilege_type = 'EXECUTE'
         AND a.grantee NOT IN (SELECT o.role FROM owners o)
    )
    SELECT DISTINCT r.grantee, 'GRANT' AS verb, 'TO' AS direction FROM readers r
     WHERE r.grantee NOT IN (SELECT c.grantee FROM callers c)
    UNION
    SELECT c.grantee, 'REVOKE', 'FROM' FROM callers c
     WHERE c.grantee NOT IN (SELECT r.grantee FROM readers r)
  LOOP
    EXECUTE format('%s EXECUTE ON FUNCTION vault._decrypt(uuid) %s %s', change.verb,
                   change.direction, CASE WHEN change.grantee = 0 THEN 'PUBLIC'
                   ELSE quote_ident(pg_get_userbyid(change.grantee)) END);
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION vault._mirror_reader_grants() FROM PUBLIC;

CREATE OR REPLACE FUNCTION vault._on_grant() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$ BEGIN PERFORM vault._mirror_reader_grants(); END $$;
REVOKE ALL ON FUNCTION vault._on_grant() FROM PUBLIC;
DROP EVENT TRIGGER IF EXISTS vault_reader_grants;
-- Not only GRANT and REVOKE change the view's grants: DROP OWNED revokes what a role was
-- granted and, CASCADE, what it granted with its grant option (a reader it granted lost
-- the view and kept _decrypt).
CREATE EVENT TRIGGER vault_reader_grants ON ddl_command_end
  WHEN TAG IN ('GRANT', 'REVOKE', 'DROP OWNED')
  EXECUTE FUNCTION vault._on_grant();
-- The roles an install before this one granted the view.
DO $$ BEGIN PERFORM vault._mirror_reader_grants(); END $$;

-- An older install read the key through the file_fdw table vault.keys, whose filename
-- option every role reads in pg_foreign_table.  It goes, with its server if nothing else
-- uses that, once the key file reads the same keys through vault._keys() (else this
-- transaction, and so the whole upgrade, is undone).
SELECT EXISTS (
    SELECT FROM pg_foreign_table t JOIN pg_foreign_server v ON v.oid = t.ftserver
     WHERE t.ftrelid = to_regclass('vault.keys') AND v.srvname = 'vault_key_file'
  ) AS vault_file_fdw \gset
\if :vault_file_fdw
  DO $$
  BEGIN
    IF EXISTS (SELECT o.id, o.key FROM vault.keys o
               EXCEPT SELECT n.id, n.key FROM vault._keys() n)
       OR EXISTS (SELECT n.id, n.key FROM vault._keys() n
                  EXCEPT SELECT o.id, o.key FROM vault.keys o)
    THEN
      RAISE EXCEPTION 'vault: the key file reads other keys than vault.keys showed; the '
                      'install is left as it was'
        USING HINT = 'Each line of the key file must be a key number, a tab and the key, '
                     'with no backslash escapes: fix the file, then run sql/vault.sql again.';
    END IF;
  END
  $$;
  DROP FOREIGN TABLE vault.keys;
  SELECT 'DROP SERVER vault_key_file' FROM pg_foreign_server v
   WHERE v.srvname = 'vault_key_file'
     AND NOT EXISTS (SELECT FROM pg_foreign_table t WHERE t.ftserver = v.oid)
     AND NOT EXISTS (SELECT FROM pg_user_mapping m WHERE m.umserver = v.oid) \gexec
\endif

-- A failed call would have PostgreSQL log the statement, secret included
-- (log_min_error_statement = error by default), so the two functions that take a secret
-- raise the level for their run.  It still holds when PostgreSQL reports the error (the
-- transaction is aborted, and the setting undone, only after that); only a superuser may
-- set it, which these SECURITY DEFINER functions are while they run, whoever calls them.
CREATE OR REPLACE FUNCTION vault.create_secret(
  new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT ''
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
SET log_min_error_statement = panic
AS $$
DECLARE
  k record := vault._current_key();
  new_id uuid;
BEGIN
  IF k.key IS NULL THEN
    RAISE EXCEPTION 'vault: the key file has no key' USING HINT = 'See sql/vault.sql.';
  END IF;
  INSERT INTO vault.secrets (name, description, secret, key_id)
  VALUES (new_name, coalesce(new_description, ''),
          vault._encrypt(new_secret, k.key), k.id)
  RETURNING id INTO new_id;
  RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION vault.update_secret(
  secret_id uuid, new_secret text DEFAULT NULL, new_name text DEFAULT NULL,
  new_description text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
SET log_min_error_statement = panic
AS $$
DECLARE
  k record := vault._current_key();
BEGIN
  UPDATE vault.secrets s SET
    secret = CASE WHEN new_secret IS NULL THEN s.secret
             ELSE vault._encrypt(new_secret, k.key) END,
    key_id = CASE WHEN new_secret IS NULL THEN s.key_id ELSE k.id END,
    name = coalesce(new_name, s.name),
    description = coalesce(new_description, s.description),
    updated_at = now()
  WHERE s.id = secret_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'vault: no secret with id %', secret_id;
  END IF;
END
$$;

-- Re-encrypts every secret under the highest key in the key file; returns how many.
CREATE OR REPLACE FUNCTION vault.rotate_key() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  k record := vault._current_key();
  n bigint;
BEGIN
  UPDATE vault.secrets s SET
    secret = vault._encrypt(vault._decrypt_with(s.secret, old.key), k.key),
    key_id = k.id
  FROM vault._keys() old
  WHERE old.id = s.key_id AND s.key_id <> k.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF EXISTS (SELECT FROM vault.secrets s WHERE s.key_id <> k.id) THEN
    RAISE EXCEPTION 'vault: some secrets use a key that is no longer in the key file'
      USING HINT = 'Put the old key''s line back in the key file, then rotate again.';
  END IF;
  RETURN n;
END
$$;

-- Secrets go in through create_secret and update_secret only.  The older Supabase form,
-- INSERT INTO vault.secrets (name, secret) VALUES (...), would store the secret unencrypted
-- and, failing on the missing key_id, show it (in hex) in the error's DETAIL "Failing row
-- contains (...)" and log it beside the statement; COPY into the table names the row it
-- failed on in its CONTEXT line ("COPY secrets, line 1: ..."), secret included, and a
-- write into the view decrypted_secrets failed in PostgreSQL ("cannot insert into view"),
-- which logs the statement.  So a row whose secret is not pgcrypto's output (it starts with
-- an OpenPGP packet tag) or that names no key, and every row written into the view, is
-- dropped before any constraint check (the row trigger returns NULL and marks the
-- statement), and the statement is refused at its end (the statement trigger), where no
-- row or COPY line is in the error's context, with the statement kept out of the server
-- log; the message names no value.
CREATE OR REPLACE FUNCTION vault._refuse_plain_secret() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
BEGIN
  IF TG_TABLE_NAME = 'decrypted_secrets' OR NEW.key_id IS NULL OR NEW.secret IS NULL
     OR pg_catalog.length(NEW.secret) < 2
     OR pg_catalog.get_byte(NEW.secret, 0) NOT IN (140, 195) THEN  -- 0x8c, 0xc3: tag 3
    PERFORM pg_catalog.set_config('vault.plain_secret_refused', 'on', true);
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION vault._refuse_plain_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
BEGIN
  IF pg_catalog.current_setting('vault.plain_secret_refused', true) = 'on' THEN
    PERFORM pg_catalog.set_config('log_min_error_statement', 'panic', true);
    RAISE EXCEPTION 'vault: a secret is stored with vault.create_secret(), not written into '
                    'vault.secrets'
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'SELECT vault.create_secret(''<secret>'', ''<name>''); to change one: '
                   'SELECT vault.update_secret(''<id>'', new_secret => ''<secret>'').',
            DETAIL = 'The row was refused before it was checked or stored; it is not shown.';
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vault._refuse_plain_secret() FROM PUBLIC;
REVOKE ALL ON FUNCTION vault._refuse_plain_statement() FROM PUBLIC;
DROP TRIGGER IF EXISTS refuse_plain_secret ON vault.secrets;
CREATE TRIGGER refuse_plain_secret BEFORE INSERT OR UPDATE OF secret, key_id ON vault.secrets
  FOR EACH ROW EXECUTE FUNCTION vault._refuse_plain_secret();
DROP TRIGGER IF EXISTS refuse_plain_statement ON vault.secrets;
CREATE TRIGGER refuse_plain_statement AFTER INSERT OR UPDATE OF secret, key_id
  ON vault.secrets FOR EACH STATEMENT EXECUTE FUNCTION vault._refuse_plain_statement();
DROP TRIGGER IF EXISTS refuse_plain_secret ON vault.decrypted_secrets;
CREATE TRIGGER refuse_plain_secret INSTEAD OF INSERT OR UPDATE ON vault.decrypted_secrets
  FOR EACH ROW EXECUTE FUNCTION vault._refuse_plain_secret();
DROP TRIGGER IF EXISTS refuse_plain_statement ON vault.decrypted_secrets;
CREATE TRIGGER refuse_plain_statement AFTER INSERT OR UPDATE ON vault.decrypted_secrets
  FOR EACH STATEMENT EXECUTE FUNCTION vault._refuse_plain_statement();

REVOKE ALL ON FUNCTION vault.create_secret(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.update_secret(uuid, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.rotate_key() FROM PUBLIC;

-- What this script creates is its owner's alone, whatever ALTER DEFAULT PRIVILEGES this
-- role set (a reporting role granted SELECT on every new table, EXECUTE on every new
-- function and USAGE on every new schema read vault.key_file, vault._keys() and, through
-- the view, every secret): every grant to another role is revoked, on a fresh install
-- from everything in vault, over an install from the internals only (the schema, the
-- view and create_secret, update_secret, rotate_key keep what was granted since).
-- vault._decrypt follows the view (the event trigger, at each REVOKE here).
SELECT DISTINCT format('REVOKE ALL ON %s %s FROM %s', o.kind, o.object,
         CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
  FROM (SELECT 'TABLE' AS kind, c.oid::regclass::text AS object, c.relname AS name,
               c.relacl AS acl, c.relowner AS owner
          FROM pg_class c
         WHERE c.relnamespace = 'vault'::regnamespace AND c.relkind IN ('r', 'v')
        UNION ALL
        SELECT 'FUNCTION', p.oid::regprocedure::text, p.proname, p.proacl, p.proowner
          FROM pg_proc p WHERE p.pronamespace = 'vault'::regnamespace AND p.proname <> '_decrypt'
        UNION ALL
        SELECT 'SCHEMA', 'vault', 'vault', n.nspacl, n.nspowner
          FROM pg_namespace n WHERE n.nspname = 'vault') o,
       aclexplode(o.acl) a
 WHERE a.grantee <> o.owner
   AND (:'vault_fresh'::boolean
        OR o.name NOT IN ('vault', 'decrypted_secrets', 'create_secret', 'update_secret',
                          'rotate_key')) \gexec

COMMIT;

RESET search_path;
RESET client_min_messages;
