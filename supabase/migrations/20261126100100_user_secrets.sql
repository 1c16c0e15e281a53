-- Users' own provider keys (BYOK), encrypted by the gateway with AES-256-GCM before they get here.
--
-- The database never sees a plaintext key. Even so, no API role but the gateway's service role can read
-- the ciphertext: a user may read the masked hint and dates of their own keys, nothing else.

create table public.user_secrets (
  user_id uuid not null references auth.users (id) on delete cascade,
  provider text not null check (provider ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
  ciphertext text not null check (length(ciphertext) between 1 and 16384),
  key_id text not null check (key_id ~ '^[A-Za-z0-9_-]{1,32}$'),
  hint text not null check (length(hint) <= 64),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (user_id, provider)
);

-- Rows not yet under the newest encryption key (for re-encryption).
create index user_secrets_key_id on public.user_secrets (key_id);

alter table public.user_secrets enable row level security;

revoke all on public.user_secrets from public, anon, authenticated, service_role;
-- Column grant: `authenticated` cannot select ciphertext or key_id at all, whatever the policy says.
grant select (user_id, provider, hint, created_at, updated_at) on public.user_secrets to authenticated;
grant select on public.user_secrets to service_role;

create policy "users read their own key hints" on public.user_secrets
  for select to authenticated
  using (user_id = (select auth.uid()));

create function public.put_user_secret(
  p_user_id uuid, p_provider text, p_ciphertext text, p_key_id text, p_hint text
)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  insert into public.user_secrets as s (user_id, provider, ciphertext, key_id, hint)
  values (p_user_id, p_provider, p_ciphertext, p_key_id, p_hint)
  on conflict (user_id, provider) do update
    set ciphertext = excluded.ciphertext, key_id = excluded.key_id, hint = excluded.hint, updated_at = now()
  returning jsonb_build_object(
    'provider', s.provider, 'hint', s.hint, 'key_id', s.key_id,
    'created_at', s.created_at, 'updated_at', s.updated_at
  )
$$;

create function public.delete_user_secret(p_user_id uuid, p_provider text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_n integer;
begin
  delete from public.user_secrets where user_id = p_user_id and provider = p_provider;
  get diagnostics v_n = row_count;
  return v_n > 0;
end
$$;

-- Compare-and-swap, so re-encryption never overwrites a key the user replaced meanwhile.
create function public.replace_user_secret(
  p_user_id uuid, p_provider text, p_old_ciphertext text, p_new_ciphertext text, p_key_id text
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_n integer;
begin
  update public.user_secrets
    set ciphertext = p_new_ciphertext, key_id = p_key_id
    where user_id = p_user_id and provider = p_provider and ciphertext = p_old_ciphertext;
  get diagnostics v_n = row_count;
  return v_n > 0;
end
$$;

revoke all on function public.put_user_secret(uuid, text, text, text, text) from public, anon, authenticated;
revoke all on function public.delete_user_secret(uuid, text) from public, anon, authenticated;
revoke all on function public.replace_user_secret(uuid, text, text, text, text) from public, anon, authenticated;
grant execute on function public.put_user_secret(uuid, text, text, text, text) to service_role;
grant execute on function public.delete_user_secret(uuid, text) to service_role;
grant execute on function public.replace_user_secret(uuid, text, text, text, text) to service_role;
