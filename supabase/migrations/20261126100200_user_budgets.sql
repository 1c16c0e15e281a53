-- Spend caps per user (UTC day and UTC calendar month), and the spend lookup the gateway checks them with.

create table public.user_budgets (
  user_id uuid primary key references auth.users (id) on delete cascade,
  daily_usd numeric check (daily_usd >= 0),
  monthly_usd numeric check (monthly_usd >= 0),
  updated_at timestamptz not null default now()
);

alter table public.user_budgets enable row level security;

revoke all on public.user_budgets from public, anon, authenticated, service_role;
grant select on public.user_budgets to authenticated, service_role;

create policy "users read their own budget" on public.user_budgets
  for select to authenticated
  using (user_id = (select auth.uid()));

-- Null caps are stored as given: a row with both null means "no cap".
create function public.set_user_budget(p_user_id uuid, p_daily_usd numeric, p_monthly_usd numeric)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  insert into public.user_budgets as b (user_id, daily_usd, monthly_usd)
  values (p_user_id, p_daily_usd, p_monthly_usd)
  on conflict (user_id) do update
    set daily_usd = excluded.daily_usd, monthly_usd = excluded.monthly_usd, updated_at = now()
  returning jsonb_build_object(
    'user_id', b.user_id, 'daily_usd', b.daily_usd::text, 'monthly_usd', b.monthly_usd::text,
    'updated_at', b.updated_at
  )
$$;

-- Settled spend since the start of the day and of the month (the caller decides where those are).
create function public.user_spend(p_user_id uuid, p_day_start timestamptz, p_month_start timestamptz)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'today_usd', coalesce(sum(cost_usd) filter (where started_at >= p_day_start), 0)::text,
    'month_usd', coalesce(sum(cost_usd) filter (where started_at >= p_month_start), 0)::text
  )
  from public.stream_usage
  where user_id = p_user_id and started_at >= least(p_day_start, p_month_start)
$$;

revoke all on function public.set_user_budget(uuid, numeric, numeric) from public, anon, authenticated;
revoke all on function public.user_spend(uuid, timestamptz, timestamptz) from public, anon, authenticated;
grant execute on function public.set_user_budget(uuid, numeric, numeric) to service_role;
grant execute on function public.user_spend(uuid, timestamptz, timestamptz) to service_role;
