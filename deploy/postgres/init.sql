-- Least-privilege roles and the newsdedup database, for the postgres:16 image
-- (mounted into /docker-entrypoint-initdb.d; runs once, when the data volume is empty).
-- The same roles and grants as scripts/services.sh:
--   newsdedup_owner  owns the database and schema public; runs the migrations
--                    (`newsdedup db upgrade` with NEWSDEDUP_MIGRATION_DATABASE_URL)
--   newsdedup_app    the prepare/match/ingest roles: reads and writes rows of the tables the
--                    owner creates, and cannot create, alter or drop anything
-- Passwords come from the postgres container's environment (psql 15+ \getenv):
-- NEWSDEDUP_PG_OWNER_PASSWORD and NEWSDEDUP_PG_APP_PASSWORD, set in docker-compose.yml.
-- The image's entrypoint runs this file with psql as the superuser and ON_ERROR_STOP=1.

\set ON_ERROR_STOP 1
\set owner_role newsdedup_owner
\set app_role newsdedup_app
\set db newsdedup
\getenv owner_pw NEWSDEDUP_PG_OWNER_PASSWORD
\getenv app_pw NEWSDEDUP_PG_APP_PASSWORD

-- Fail with a clear message when a password variable is missing or empty.
SELECT :{?owner_pw} AND :{?app_pw} AS passwords_set \gset
\if :passwords_set
\else
  \warn 'init.sql: set NEWSDEDUP_PG_OWNER_PASSWORD and NEWSDEDUP_PG_APP_PASSWORD in the postgres container'
  SELECT 1/0 AS missing_password;
\endif
SELECT length(:'owner_pw') > 0 AND length(:'app_pw') > 0 AS passwords_nonempty \gset
\if :passwords_nonempty
\else
  \warn 'init.sql: NEWSDEDUP_PG_OWNER_PASSWORD and NEWSDEDUP_PG_APP_PASSWORD must not be empty'
  SELECT 1/0 AS empty_password;
\endif

-- Roles (idempotent, like services.sh: create if missing, then set the attributes).
SELECT format('CREATE ROLE %I', :'owner_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner_role') \gexec
SELECT format('CREATE ROLE %I', :'app_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_role') \gexec
ALTER ROLE :"owner_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'owner_pw';
ALTER ROLE :"app_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'app_pw';

-- The database, owned by the owner role.
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec

\connect :"db"
ALTER DATABASE :"db" OWNER TO :"owner_role";
-- Only the two roles (and the superuser) may connect.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app_role";
-- The owner role owns schema public and so everything migrations create in it.
ALTER SCHEMA public OWNER TO :"owner_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_role";
-- The app role reads and writes rows of tables the owner role creates, nothing more.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"app_role";
