-- cognito_fdw monitor: the wrapper's numbers in SQL, for a monitoring role.
--
--   psql -v server=cognito_server -f sql/monitor.sql     (sql/cognito_fdw.sql runs it)
--
-- Three foreign tables read the state every backend of this PostgreSQL server shares
-- (cognito_fdw/monitor.py; never Cognito, no credential): the request counters per pool and
-- operation, the request-rate budgets now, and the cache's entries.  Views over them are
-- granted to pg_monitor, whose members need neither USAGE on a server nor a user mapping;
-- nothing in them is a secret or a key id (a budget is named by a hash).  The tables
-- themselves stay their owner's: only clear_cache() (granted to nobody but the owner)
-- deletes from the cache.  Needs a superuser (or the server's owner) and an existing
-- cognito_fdw server, whose pool id is only what Multicorn requires of a table.

\set ON_ERROR_STOP on
\if :{?server}
\else
  \set server cognito_server
\endif

SET client_min_messages = warning;
-- Run by a superuser, alone or from sql/cognito_fdw.sql: every name below resolves in
-- pg_catalog first, never in a schema another role may create in (a role's
-- format(text, text, text) in public is a closer match than pg_catalog's
-- format(text, VARIADIC "any") and would run as the superuser).  Reset at the end.
SET search_path = pg_catalog, pg_temp;
SELECT to_regnamespace('cognito_fdw_monitor') IS NULL AS monitor_fresh \gset
CREATE SCHEMA IF NOT EXISTS cognito_fdw_monitor;
-- The schema must be a superuser's, with CREATE for no other role: the owner of a schema may
-- drop anything in it (DROP SCHEMA ... CASCADE takes event triggers and views of other
-- owners with it) and a role that may CREATE there adds functions that this script's
-- objects would call by name.  A role with CREATE on the database could make it first.
DO $check$
BEGIN
  IF EXISTS (
    SELECT FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
     WHERE n.nspname = 'cognito_fdw_monitor'
       AND (NOT o.rolsuper
            OR EXISTS (SELECT FROM pg_catalog.pg_roles r
                        WHERE NOT r.rolsuper
                          AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE'))
            OR pg_catalog.has_schema_privilege('public', n.oid, 'CREATE'))) THEN
    RAISE EXCEPTION USING
      MESSAGE = 'monitor.sql: schema cognito_fdw_monitor is not safe to install into',
      DETAIL = 'It is owned by a role that is not a superuser, or another role may CREATE in '
               'it: that role could drop or stand in for what this script installs there.',
      HINT = 'Drop the schema if it holds nothing of yours, or ALTER SCHEMA cognito_fdw_monitor '
             'OWNER TO a superuser and REVOKE CREATE ON SCHEMA cognito_fdw_monitor FROM the '
             'others; then run the script again.';
  END IF;
END
$check$;
REVOKE ALL ON SCHEMA cognito_fdw_monitor FROM PUBLIC;

SELECT format(
  'CREATE FOREIGN TABLE IF NOT EXISTS cognito_fdw_monitor.request_stats_source ('
  '  pool_id text, region text, endpoint text, operation text, requests bigint,'
  '  throttled bigint, retries bigint, errors bigint, rows bigint,'
  '  cognito_ms double precision, cap_ms double precision, cache_hits bigint,'
  '  cache_misses bigint) SERVER %I OPTIONS (object %L)', :'server', 'request_stats'
) \gexec
SELECT format(
  'CREATE FOREIGN TABLE IF NOT EXISTS cognito_fdw_monitor.rate_budget_source ('
  '  budget text, region text, endpoint text, cap integer, sent_last_second integer,'
  '  waiting integer) SERVER %I OPTIONS (object %L)', :'server', 'rate_budget'
) \gexec
SELECT format(
  'CREATE FOREIGN TABLE IF NOT EXISTS cognito_fdw_monitor.cache_source ('
  '  entry text, pool_id text, region text, endpoint text, operation text, entries bigint,'
  '  bytes bigint, oldest_seconds double precision) SERVER %I OPTIONS (object %L)',
  :'server', 'cache'
) \gexec
REVOKE ALL ON cognito_fdw_monitor.request_stats_source, cognito_fdw_monitor.rate_budget_source,
  cognito_fdw_monitor.cache_source FROM PUBLIC;

-- The servers of this database that name the pool (a pool id is public in pg_foreign_server).
CREATE OR REPLACE FUNCTION cognito_fdw_monitor.servers_of(pool_id text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT string_agg(s.srvname, ', ' ORDER BY s.srvname)
    FROM pg_catalog.pg_foreign_server s
   WHERE EXISTS (SELECT FROM pg_catalog.pg_options_to_table(s.srvoptions) o
                  WHERE o.option_name = 'user_pool_id' AND o.option_value = servers_of.pool_id)
$$;

-- Cumulative, per pool (its servers named) and Cognito operation, since the state file was
-- made; each backend adds its counts at the end of each scan.
CREATE OR REPLACE VIEW cognito_fdw_monitor.request_stats AS
  SELECT cognito_fdw_monitor.servers_of(r.pool_id) AS servers, r.*
    FROM cognito_fdw_monitor.request_stats_source r;
-- Each request-rate budget now: its cap, the requests sent in the last second, the
-- requests waiting for a slot.
CREATE OR REPLACE VIEW cognito_fdw_monitor.rate_budget AS
  SELECT * FROM cognito_fdw_monitor.rate_budget_source;
-- The cache per pool and operation: entries, bytes, the oldest one's age in seconds.
CREATE OR REPLACE VIEW cognito_fdw_monitor.cache AS
  SELECT cognito_fdw_monitor.servers_of(c.pool_id) AS servers, c.pool_id, c.region,
         c.endpoint, c.operation, c.entries, c.bytes, c.oldest_seconds
    FROM cognito_fdw_monitor.cache_source c;

-- Empties the cache of every pool (every backend's next query asks Cognito); how many
-- answers it dropped.
CREATE OR REPLACE FUNCTION cognito_fdw_monitor.clear_cache() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  dropped bigint;
BEGIN
  SELECT coalesce(sum(c.entries), 0) INTO dropped FROM cognito_fdw_monitor.cache_source c;
  DELETE FROM cognito_fdw_monitor.cache_source;
  RETURN dropped;
END
$$;
REVOKE ALL ON FUNCTION cognito_fdw_monitor.clear_cache() FROM PUBLIC;

-- Nor what ALTER DEFAULT PRIVILEGES of this role grants (a role given every new table
-- could DELETE FROM cache_source, one given every new function call clear_cache()): every
-- grant to another role on the tables and clear_cache() is revoked; on a fresh install
-- also on the schema and the views (a run over an install keeps what was granted since).
-- servers_of() stays PUBLIC's: the views' readers call it.
SELECT DISTINCT format('REVOKE ALL ON %s %s FROM %s', o.kind, o.object,
         CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
  FROM (SELECT 'TABLE' AS kind, c.oid::regclass::text AS object, c.relname AS name,
               c.relacl AS acl, c.relowner AS owner
          FROM pg_class c
         WHERE c.relnamespace = 'cognito_fdw_monitor'::regnamespace
           AND c.relkind IN ('r', 'v', 'f')
        UNION ALL
        SELECT 'FUNCTION', p.oid::regprocedure::text, p.proname, p.proacl, p.proowner
          FROM pg_proc p
         WHERE p.pronamespace = 'cognito_fdw_monitor'::regnamespace
           AND p.proname <> 'servers_of'
        UNION ALL
        SELECT 'SCHEMA', 'cognito_fdw_monitor', 'cognito_fdw_monitor', n.nspacl, n.nspowner
          FROM pg_namespace n WHERE n.nspname = 'cognito_fdw_monitor') o,
       aclexplode(o.acl) a
 WHERE a.grantee <> o.owner
   AND (o.name LIKE '%\_source' OR o.name = 'clear_cache' OR :'monitor_fresh'::boolean) \gexec
GRANT USAGE ON SCHEMA cognito_fdw_monitor TO pg_monitor;
GRANT SELECT ON cognito_fdw_monitor.request_stats, cognito_fdw_monitor.rate_budget,
  cognito_fdw_monitor.cache TO pg_monitor;
RESET client_min_messages;
RESET search_path;
