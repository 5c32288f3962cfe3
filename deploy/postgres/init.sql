-- Least-privilege roles and the newsdedup database, for the postgres:16 image
-- (mounted into /docker-entrypoint-initdb.d; runs once, when the data volume is empty).
-- The same roles and grants as scripts/services.sh:
--   newsdedup_owner   owns the database and schema public; runs the migrations
--                     (`newsdedup db upgrade` with NEWSDEDUP_MIGRATION_DATABASE_URL)
--   newsdedup_app     the match role (and `newsdedup run/export` against PostgreSQL): reads and writes rows
--                     of the tables the owner creates, and cannot create, alter or drop anything
--   newsdedup_reader  reports, audits, ad-hoc queries: SELECT on those tables, nothing else
-- Passwords come from the postgres container's environment (psql 15+ \getenv), each either as
-- NEWSDEDUP_PG_<ROLE>_PASSWORD (docker-compose.yml) or as NEWSDEDUP_PG_<ROLE>_PASSWORD_FILE naming a
-- file that holds it (docker-compose.secure.yml: compose secrets in /run/secrets; one trailing newline is
-- dropped). The file must be readable by the container's postgres user.
-- The image's entrypoint runs this file with psql as the superuser and ON_ERROR_STOP=1.

\set ON_ERROR_STOP 1
\set owner_role newsdedup_owner
\set app_role newsdedup_app
\set reader_role newsdedup_reader
\set db newsdedup

-- Each password from its variable, or from the file its _FILE variable names (psql runs `cat` for it, so
-- the password never appears on a command line). Both set is refused: which one was meant is a guess.
\getenv owner_pw NEWSDEDUP_PG_OWNER_PASSWORD
\getenv owner_pw_file NEWSDEDUP_PG_OWNER_PASSWORD_FILE
\getenv app_pw NEWSDEDUP_PG_APP_PASSWORD
\getenv app_pw_file NEWSDEDUP_PG_APP_PASSWORD_FILE
\getenv reader_pw NEWSDEDUP_PG_READER_PASSWORD
\getenv reader_pw_file NEWSDEDUP_PG_READER_PASSWORD_FILE
SELECT :{?owner_pw} AND :{?owner_pw_file} OR :{?app_pw} AND :{?app_pw_file}
       OR :{?reader_pw} AND :{?reader_pw_file} AS both_forms \gset
\if :both_forms
  \warn 'init.sql: set NEWSDEDUP_PG_<ROLE>_PASSWORD or NEWSDEDUP_PG_<ROLE>_PASSWORD_FILE, not both'
  SELECT 1/0 AS password_given_twice;
\endif
\if :{?owner_pw_file}
  \set owner_pw `cat :'owner_pw_file'`
\endif
\if :{?app_pw_file}
  \set app_pw `cat :'app_pw_file'`
\endif
\if :{?reader_pw_file}
  \set reader_pw `cat :'reader_pw_file'`
\endif

-- Fail with a clear message when a password is missing or empty (a file that could not be read is empty).
SELECT :{?owner_pw} AND :{?app_pw} AND :{?reader_pw} AS passwords_set \gset
\if :passwords_set
\else
  \warn 'init.sql: set NEWSDEDUP_PG_OWNER_PASSWORD, NEWSDEDUP_PG_APP_PASSWORD and NEWSDEDUP_PG_READER_PASSWORD (or their _FILE forms) in the postgres container'
  SELECT 1/0 AS missing_password;
\endif
SELECT length(:'owner_pw') > 0 AND length(:'app_pw') > 0 AND length(:'reader_pw') > 0 AS passwords_nonempty \gset
\if :passwords_nonempty
\else
  \warn 'init.sql: the owner, app and reader passwords must not be empty (is a _FILE unreadable or empty?)'
  SELECT 1/0 AS empty_password;
\endif

-- Roles (idempotent, like services.sh: create if missing, then set the attributes).
SELECT format('CREATE ROLE %I', :'owner_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner_role') \gexec
SELECT format('CREATE ROLE %I', :'app_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_role') \gexec
SELECT format('CREATE ROLE %I', :'reader_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader_role') \gexec
ALTER ROLE :"owner_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'owner_pw';
ALTER ROLE :"app_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'app_pw';
ALTER ROLE :"reader_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'reader_pw';

-- The database, owned by the owner role.
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec

\connect :"db"
ALTER DATABASE :"db" OWNER TO :"owner_role";
-- Only the three roles (and the superuser) may connect.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app_role";
GRANT CONNECT ON DATABASE :"db" TO :"reader_role";
-- The owner role owns schema public and so everything migrations create in it.
ALTER SCHEMA public OWNER TO :"owner_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_role";
-- The app role reads and writes rows of tables the owner role creates, nothing more.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"app_role";
-- The reader role reads rows and nothing more: the tables there now and, by default privileges, those
-- created later.
GRANT USAGE ON SCHEMA public TO :"reader_role";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT SELECT ON TABLES TO :"reader_role";
