-- The cost ledger: one row per stream, one per attempt (segment), written only by the gateway.
--
-- Writes go through record_streams() (security definer, service role only) and are idempotent on
-- stream_id and (stream_id, segment), so a replayed batch never double counts. Users read their own
-- rows (RLS); nobody but the gateway writes.

create table public.stream_usage (
  stream_id text primary key,
  user_id uuid not null,
  client_id text,
  requested_model text not null,
  models_tried text[] not null default '{}',
  status text not null check (status in ('done', 'error', 'cancelled', 'budget_exceeded')),
  finish_reason text,
  error_code text,
  input_tokens bigint not null default 0 check (input_tokens >= 0),
  output_tokens bigint not null default 0 check (output_tokens >= 0),
  cached_input_tokens bigint not null default 0 check (cached_input_tokens >= 0),
  reasoning_tokens bigint not null default 0 check (reasoning_tokens >= 0),
  cost_usd numeric not null default 0 check (cost_usd >= 0),
  estimated boolean not null default false,
  ttft_ms double precision,
  duration_ms double precision not null default 0,
  started_at timestamptz not null,
  ended_at timestamptz not null,
  recorded_at timestamptz not null default now()
);

-- A user's spend over a period, and everyone's (the operator's view).
create index stream_usage_user_started on public.stream_usage (user_id, started_at desc);
create index stream_usage_started on public.stream_usage (started_at desc);

create table public.stream_segments (
  stream_id text not null references public.stream_usage (stream_id) on delete cascade,
  segment integer not null check (segment >= 1),
  user_id uuid not null,
  provider text not null,
  model text not null,
  status text not null check (status in ('ok', 'failed', 'cancelled')),
  reason text,
  input_tokens bigint not null default 0 check (input_tokens >= 0),
  output_tokens bigint not null default 0 check (output_tokens >= 0),
  cached_input_tokens bigint not null default 0 check (cached_input_tokens >= 0),
  reasoning_tokens bigint not null default 0 check (reasoning_tokens >= 0),
  cost_usd numeric not null default 0 check (cost_usd >= 0),
  estimated boolean not null default false,
  ttft_ms double precision,
  duration_ms double precision not null default 0,
  -- The stream's start, copied here so per-model and per-provider spend needs no join.
  started_at timestamptz not null,
  primary key (stream_id, segment)
);

create index stream_segments_user_started on public.stream_segments (user_id, started_at desc);
create index stream_segments_started on public.stream_segments (started_at desc);

alter table public.stream_usage enable row level security;
alter table public.stream_segments enable row level security;

-- Supabase grants every API role everything on new tables by default: take it back, then allow reads.
revoke all on public.stream_usage, public.stream_segments from public, anon, authenticated, service_role;
grant select on public.stream_usage, public.stream_segments to authenticated, service_role;

create policy "users read their own streams" on public.stream_usage
  for select to authenticated
  using (user_id = (select auth.uid()));

create policy "users read their own segments" on public.stream_segments
  for select to authenticated
  using (user_id = (select auth.uid()));

-- Spend per UTC day, per day and model, per day and provider. security_invoker makes the caller's RLS
-- apply, so a user querying a view sees only their own rows.
create view public.usage_daily with (security_invoker = true) as
select
  user_id,
  (started_at at time zone 'utc')::date as day,
  count(*) as streams,
  sum(input_tokens) as input_tokens,
  sum(output_tokens) as output_tokens,
  sum(cached_input_tokens) as cached_input_tokens,
  sum(reasoning_tokens) as reasoning_tokens,
  sum(cost_usd) as cost_usd
from public.stream_usage
group by user_id, (started_at at time zone 'utc')::date;

create view public.usage_daily_by_model with (security_invoker = true) as
select
  user_id,
  (started_at at time zone 'utc')::date as day,
  provider,
  model,
  count(distinct stream_id) as streams,
  count(*) as segments,
  sum(input_tokens) as input_tokens,
  sum(output_tokens) as output_tokens,
  sum(cached_input_tokens) as cached_input_tokens,
  sum(reasoning_tokens) as reasoning_tokens,
  sum(cost_usd) as cost_usd
from public.stream_segments
group by user_id, (started_at at time zone 'utc')::date, provider, model;

create view public.usage_daily_by_provider with (security_invoker = true) as
select
  user_id,
  (started_at at time zone 'utc')::date as day,
  provider,
  count(distinct stream_id) as streams,
  count(*) as segments,
  sum(input_tokens) as input_tokens,
  sum(output_tokens) as output_tokens,
  sum(cached_input_tokens) as cached_input_tokens,
  sum(reasoning_tokens) as reasoning_tokens,
  sum(cost_usd) as cost_usd
from public.stream_segments
group by user_id, (started_at at time zone 'utc')::date, provider;

revoke all on public.usage_daily, public.usage_daily_by_model, public.usage_daily_by_provider
  from public, anon, authenticated, service_role;
grant select on public.usage_daily, public.usage_daily_by_model, public.usage_daily_by_provider
  to authenticated, service_role;

-- record_streams: a batch of finished streams as a JSON array (one object per stream with a
-- `segments` array). Returns how many streams were new.
create function public.record_streams(p_streams jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_new integer;
begin
  if jsonb_typeof(p_streams) is distinct from 'array' then
    raise exception 'record_streams expects a JSON array' using errcode = '22023';
  end if;

  insert into public.stream_usage (
    stream_id, user_id, client_id, requested_model, models_tried, status, finish_reason, error_code,
    input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cost_usd, estimated,
    ttft_ms, duration_ms, started_at, ended_at
  )
  select
    s.stream_id, s.user_id, s.client_id, s.requested_model, coalesce(s.models_tried, '{}'), s.status,
    s.finish_reason, s.error_code, s.input_tokens, s.output_tokens, s.cached_input_tokens,
    s.reasoning_tokens, s.cost_usd, s.estimated, s.ttft_ms, s.duration_ms, s.started_at, s.ended_at
  from jsonb_to_recordset(p_streams) as s (
    stream_id text, user_id uuid, client_id text, requested_model text, models_tried text[], status text,
    finish_reason text, error_code text, input_tokens bigint, output_tokens bigint,
    cached_input_tokens bigint, reasoning_tokens bigint, cost_usd numeric, estimated boolean,
    ttft_ms double precision, duration_ms double precision, started_at timestamptz, ended_at timestamptz
  )
  on conflict (stream_id) do nothing;
  get diagnostics v_new = row_count;

  insert into public.stream_segments (
    stream_id, segment, user_id, provider, model, status, reason, input_tokens, output_tokens,
    cached_input_tokens, reasoning_tokens, cost_usd, estimated, ttft_ms, duration_ms, started_at
  )
  select
    s.stream_id, g.segment, s.user_id, g.provider, g.model, g.status, g.reason, g.input_tokens,
    g.output_tokens, g.cached_input_tokens, g.reasoning_tokens, g.cost_usd, g.estimated, g.ttft_ms,
    g.duration_ms, s.started_at
  from jsonb_to_recordset(p_streams) as s (stream_id text, user_id uuid, started_at timestamptz, segments jsonb)
  cross join lateral jsonb_to_recordset(coalesce(s.segments, '[]'::jsonb)) as g (
    segment integer, provider text, model text, status text, reason text, input_tokens bigint,
    output_tokens bigint, cached_input_tokens bigint, reasoning_tokens bigint, cost_usd numeric,
    estimated boolean, ttft_ms double precision, duration_ms double precision
  )
  on conflict (stream_id, segment) do nothing;

  return v_new;
end
$$;

-- usage_summary: totals and breakdowns over [p_since, p_until) for one user, or all users when
-- p_user_id is null. Money is returned as text so no client turns it into a float.
create function public.usage_summary(p_user_id uuid, p_since timestamptz, p_until timestamptz)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  with streams as (
    select * from public.stream_usage u
    where u.started_at >= p_since and u.started_at < p_until
      and (p_user_id is null or u.user_id = p_user_id)
  ),
  segs as (
    select * from public.stream_segments g
    where g.started_at >= p_since and g.started_at < p_until
      and (p_user_id is null or g.user_id = p_user_id)
  ),
  seg_days as (
    select (started_at at time zone 'utc')::date as day, count(*) as segments from segs group by 1
  ),
  days as (
    select
      (started_at at time zone 'utc')::date as day,
      count(*) as streams,
      sum(input_tokens) as input_tokens,
      sum(output_tokens) as output_tokens,
      sum(cached_input_tokens) as cached_input_tokens,
      sum(reasoning_tokens) as reasoning_tokens,
      sum(cost_usd) as cost_usd
    from streams group by 1
  ),
  models as (
    select
      provider, model,
      count(distinct stream_id) as streams,
      count(*) as segments,
      sum(input_tokens) as input_tokens,
      sum(output_tokens) as output_tokens,
      sum(cached_input_tokens) as cached_input_tokens,
      sum(reasoning_tokens) as reasoning_tokens,
      sum(cost_usd) as cost_usd
    from segs group by provider, model
  ),
  providers as (
    select
      provider,
      count(distinct stream_id) as streams,
      count(*) as segments,
      sum(input_tokens) as input_tokens,
      sum(output_tokens) as output_tokens,
      sum(cached_input_tokens) as cached_input_tokens,
      sum(reasoning_tokens) as reasoning_tokens,
      sum(cost_usd) as cost_usd
    from segs group by provider
  )
  select jsonb_build_object(
    'totals', (
      select jsonb_build_object(
        'streams', count(*),
        'segments', (select count(*) from segs),
        'input_tokens', coalesce(sum(input_tokens), 0),
        'output_tokens', coalesce(sum(output_tokens), 0),
        'cached_input_tokens', coalesce(sum(cached_input_tokens), 0),
        'reasoning_tokens', coalesce(sum(reasoning_tokens), 0),
        'cost_usd', coalesce(sum(cost_usd), 0)::text
      ) from streams
    ),
    'by_day', coalesce((
      select jsonb_agg(jsonb_build_object(
        'day', d.day,
        'streams', d.streams,
        'segments', coalesce(sd.segments, 0),
        'input_tokens', d.input_tokens,
        'output_tokens', d.output_tokens,
        'cached_input_tokens', d.cached_input_tokens,
        'reasoning_tokens', d.reasoning_tokens,
        'cost_usd', d.cost_usd::text
      ) order by d.day)
      from days d left join seg_days sd on sd.day = d.day
    ), '[]'::jsonb),
    'by_model', coalesce((
      select jsonb_agg(jsonb_build_object(
        'provider', m.provider,
        'model', m.model,
        'streams', m.streams,
        'segments', m.segments,
        'input_tokens', m.input_tokens,
        'output_tokens', m.output_tokens,
        'cached_input_tokens', m.cached_input_tokens,
        'reasoning_tokens', m.reasoning_tokens,
        'cost_usd', m.cost_usd::text
      ) order by m.cost_usd desc, m.provider, m.model)
      from models m
    ), '[]'::jsonb),
    'by_provider', coalesce((
      select jsonb_agg(jsonb_build_object(
        'provider', p.provider,
        'streams', p.streams,
        'segments', p.segments,
        'input_tokens', p.input_tokens,
        'output_tokens', p.output_tokens,
        'cached_input_tokens', p.cached_input_tokens,
        'reasoning_tokens', p.reasoning_tokens,
        'cost_usd', p.cost_usd::text
      ) order by p.cost_usd desc, p.provider)
      from providers p
    ), '[]'::jsonb)
  )
$$;

-- recent_streams: the newest streams (one user's, or everyone's when p_user_id is null), each with
-- its segments in order.
create function public.recent_streams(p_user_id uuid, p_limit integer)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(
    jsonb_build_object(
      'stream_id', u.stream_id,
      'user_id', u.user_id,
      'client_id', u.client_id,
      'requested_model', u.requested_model,
      'models_tried', to_jsonb(u.models_tried),
      'status', u.status,
      'finish_reason', u.finish_reason,
      'error_code', u.error_code,
      'input_tokens', u.input_tokens,
      'output_tokens', u.output_tokens,
      'cached_input_tokens', u.cached_input_tokens,
      'reasoning_tokens', u.reasoning_tokens,
      'cost_usd', u.cost_usd::text,
      'estimated', u.estimated,
      'ttft_ms', u.ttft_ms,
      'duration_ms', u.duration_ms,
      'started_at', u.started_at,
      'ended_at', u.ended_at,
      'segments', coalesce((
        select jsonb_agg(jsonb_build_object(
          'segment', g.segment,
          'provider', g.provider,
          'model', g.model,
          'status', g.status,
          'reason', g.reason,
          'input_tokens', g.input_tokens,
          'output_tokens', g.output_tokens,
          'cached_input_tokens', g.cached_input_tokens,
          'reasoning_tokens', g.reasoning_tokens,
          'cost_usd', g.cost_usd::text,
          'estimated', g.estimated,
          'ttft_ms', g.ttft_ms,
          'duration_ms', g.duration_ms
        ) order by g.segment)
        from public.stream_segments g where g.stream_id = u.stream_id
      ), '[]'::jsonb)
    ) order by u.started_at desc, u.stream_id
  ), '[]'::jsonb)
  from (
    select * from public.stream_usage s
    where p_user_id is null or s.user_id = p_user_id
    order by s.started_at desc, s.stream_id
    limit greatest(p_limit, 0)
  ) u
$$;

revoke all on function public.record_streams(jsonb) from public, anon, authenticated;
revoke all on function public.usage_summary(uuid, timestamptz, timestamptz) from public, anon, authenticated;
revoke all on function public.recent_streams(uuid, integer) from public, anon, authenticated;
grant execute on function public.record_streams(jsonb) to service_role;
grant execute on function public.usage_summary(uuid, timestamptz, timestamptz) to service_role;
grant execute on function public.recent_streams(uuid, integer) to service_role;
