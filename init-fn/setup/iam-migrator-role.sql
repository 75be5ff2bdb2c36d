-- One-time setup for DB_AUTH=iam: a login role for the migrations that is not the master user.
--
-- Run it once per database, as the master user, with today's password (idempotent: running it
-- again changes nothing):
--
--   psql "host=HOST dbname=documents_db user=postgres sslmode=verify-full" \
--        -v ON_ERROR_STOP=1 -f init-fn/setup/iam-migrator-role.sql
--
-- It creates
--   init_fn_owner     NOLOGIN: owns what the migrations manage (the master user's tables, views,
--                     sequences and functions in schema public, and the ledger _init_fn_migrations);
--   init_fn_migrator  LOGIN, a member of rds_iam (it logs in with IAM tokens only, it has no
--                     password) and of init_fn_owner; its sessions run as init_fn_owner
--                     (ALTER ROLE ... SET role), so what the migrations create is init_fn_owner's.
-- The master user keeps its password login (it is not granted rds_iam); the applications keep
-- their roles and their grants (an owner change keeps a table's privileges). Objects owned by
-- anyone other than the master user are left alone.
--
-- Then deploy with auth = "iam" (DB_AUTH=iam, DB_USER=init_fn_migrator).

BEGIN;

DO $setup$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
        RAISE EXCEPTION 'role rds_iam does not exist: IAM database authentication needs an RDS or Aurora PostgreSQL instance';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'init_fn_owner') THEN
        CREATE ROLE init_fn_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'init_fn_migrator') THEN
        CREATE ROLE init_fn_migrator LOGIN;
    END IF;
    -- The master user hands its objects over, so it must be a member of the new owner.
    IF NOT pg_has_role(current_user, 'init_fn_owner', 'MEMBER') THEN
        EXECUTE format('GRANT init_fn_owner TO %I', current_user);
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO init_fn_owner, init_fn_migrator',
                   current_database());
END
$setup$;

GRANT rds_iam TO init_fn_migrator;
GRANT init_fn_owner TO init_fn_migrator;
ALTER ROLE init_fn_migrator SET role = 'init_fn_owner';
GRANT USAGE, CREATE ON SCHEMA public TO init_fn_owner;

-- The master user's objects in public become init_fn_owner's (indexes and owned sequences follow
-- their table).
DO $owners$
DECLARE
    obj record;
BEGIN
    FOR obj IN
        SELECT c.oid::regclass AS name,
               CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                              WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                              ELSE 'TABLE' END AS kind
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
          AND NOT (c.relkind = 'S' AND EXISTS (
                SELECT FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
        ORDER BY c.oid
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO init_fn_owner', obj.kind, obj.name);
    END LOOP;
    FOR obj IN
        SELECT p.oid::regprocedure AS name,
               CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END AS kind
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'
          AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
          AND NOT EXISTS (SELECT FROM pg_depend d
                          WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
        ORDER BY p.oid
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO init_fn_owner', obj.kind, obj.name);
    END LOOP;
END
$owners$;

COMMIT;
