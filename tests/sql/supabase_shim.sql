-- Test only: makes a plain PostgreSQL database look enough like a Supabase project that the real
-- migrations in supabase/migrations run unchanged. Never apply this to a real Supabase project.
--
-- Roles are cluster-wide, so they are created only when missing (and concurrent test runs may race).

do $$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (select from pg_roles where rolname = r) then
      begin
        execute format('create role %I nologin noinherit', r);
      exception when duplicate_object or unique_violation then
        null;
      end;
    end if;
  end loop;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    begin
      create role authenticator login noinherit;
    exception when duplicate_object or unique_violation then
      null;
    end;
  end if;
end
$$;

do $$
declare
  r text;
begin
  if not (select rolbypassrls from pg_roles where rolname = 'service_role') then
    alter role service_role bypassrls;
  end if;
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (
      select from pg_auth_members m
      where m.roleid = (select oid from pg_roles where rolname = r)
        and m.member = (select oid from pg_roles where rolname = 'authenticator')
    ) then
      execute format('grant %I to authenticator', r);
    end if;
  end loop;
end
$$;

-- What Supabase grants on `public`: every API role may use the schema, and objects the owner creates
-- are granted to all three roles by default. Migrations must revoke what they do not want exposed.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  id uuid primary key,
  email text,
  role text not null default 'authenticated',
  created_at timestamptz not null default now()
);

-- The claims PostgREST sets per transaction (the older per-claim setting is honoured too).
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role() to anon, authenticated, service_role;
