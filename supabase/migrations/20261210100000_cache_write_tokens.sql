-- Prompt-cache writes, counted apart from plain input and from cache reads: Anthropic bills a token written to
-- its prompt cache above plain input (and one read from it below), so each stream and each attempt keeps how
-- many of its input tokens were written to the cache. `input_tokens` still counts every input token (plain,
-- read and written alike). Rows written before this migration count no cache writes.

alter table public.stream_usage
  add column cache_write_input_tokens bigint not null default 0 check (cache_write_input_tokens >= 0);
alter table public.stream_segments
  add column cache_write_input_tokens bigint not null default 0 check (cache_write_input_tokens >= 0);

-- The views gain the column at their end (a view may only grow there); grants and RLS stay as they were.

create or replace view public.usage_daily with (security_invoker = true) as
select
  user_id,
  (started_at at time zone 'utc')::date as day,
  count(*) as streams,
  sum(input_tokens) as input_tokens,
  sum(output_tokens) as output_tokens,
  sum(cached_input_tokens) as cached_input_tokens,
  sum(reasoning_tokens) as reasoning_tokens,
  sum(cost_usd) as cost_usd,
  sum(cache_write_input_tokens) as cache_write_input_tokens
from public.stream_usage
group by user_id, (started_at at time zone 'utc')::date;

create or replace view public.usage_daily_by_model with (security_invoker = true) as
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
  sum(cost_usd) as cost_usd,
  sum(cache_write_input_tokens) as cache_write_input_tokens
from public.stream_segments
group by user_id, (started_at at time zone 'utc')::date, provider, model;

create or replace view public.usage_daily_by_provider with (security_invoker = true) as
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
  sum(cost_usd) as cost_usd,
  sum(cache_write_input_tokens) as cache_write_input_tokens
from public.stream_segments
group by user_id, (started_at at time zone 'utc')::date, provider;

create or replace function public.record_streams(p_streams jsonb)
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
    input_tokens, output_tokens, cached_input_tokens, cache_write_input_tokens, reasoning_tokens, cost_usd,
    estimated, ttft_ms, duration_ms, started_at, ended_at
  )
  select
    s.stream_id, s.user_id, s.client_id, s.requested_model, coalesce(s.models_tried, '{}'), s.status,
    s.finish_reason, s.error_code, s.input_tokens, s.output_tokens, s.cached_input_tokens,
    coalesce(s.cache_write_input_tokens, 0), s.reasoning_tokens, s.cost_usd, s.estimated, s.ttft_ms, s.duration_ms, s.started_at, s.ended_at
  from jsonb_to_recordset(p_streams) as s (
    stream_id text, user_id uuid, client_id text, requested_model text, models_tried text[], status text,
    finish_reason text, error_code text, input_tokens bigint, output_tokens bigint,
    cached_input_tokens bigint, cache_write_input_tokens bigint, reasoning_tokens bigint, cost_usd numeric,
    estimated boolean, ttft_ms double precision, duration_ms double precision, started_at timestamptz,
    ended_at timestamptz
  )
  on conflict (stream_id) do nothing;
  get diagnostics v_new = row_count;

  insert into public.stream_segments (
    stream_id, segment, user_id, provider, model, status, reason, input_tokens, output_tokens,
    cached_input_tokens, cache_write_input_tokens, reasoning_tokens, cost_usd, estimated, ttft_ms,
    duration_ms, started_at, provider_code, provider_message
  )
  select
    s.stream_id, g.segment, s.user_id, g.provider, g.model, g.status, g.reason, g.input_tokens,
    g.output_tokens, g.cached_input_tokens, coalesce(g.cache_write_input_tokens, 0), g.reasoning_tokens, g.cost_usd, g.estimated, g.ttft_ms,
    g.duration_ms, s.started_at, g.provider_code, g.provider_message
  from jsonb_to_recordset(p_streams) as s (stream_id text, user_id uuid, started_at timestamptz, segments jsonb)
  cross join lateral jsonb_to_recordset(coalesce(s.segments, '[]'::jsonb)) as g (
    segment integer, provider text, model text, status text, reason text, input_tokens bigint,
    output_tokens bigint, cached_input_tokens bigint, cache_write_input_tokens bigint, reasoning_tokens bigint,
    cost_usd numeric, estimated boolean, ttft_ms double precision, duration_ms double precision,
    provider_code text, provider_message text
  )
  on conflict (stream_id, segment) do nothing;

  return v_new;
end
$$;


create or replace function public.usage_summary(p_user_id uuid, p_since timestamptz, p_until timestamptz)
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
      sum(cache_write_input_tokens) as cache_write_input_tokens,
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
      sum(cache_write_input_tokens) as cache_write_input_tokens,
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
      sum(cache_write_input_tokens) as cache_write_input_tokens,
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
        'cache_write_input_tokens', coalesce(sum(cache_write_input_tokens), 0),
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
        'cache_write_input_tokens', d.cache_write_input_tokens,
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
        'cache_write_input_tokens', m.cache_write_input_tokens,
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
        'cache_write_input_tokens', p.cache_write_input_tokens,
        'reasoning_tokens', p.reasoning_tokens,
        'cost_usd', p.cost_usd::text
      ) order by p.cost_usd desc, p.provider)
      from providers p
    ), '[]'::jsonb)
  )
$$;

create or replace function public.recent_streams(p_user_id uuid, p_limit integer)
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
      'cache_write_input_tokens', u.cache_write_input_tokens,
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
          'cache_write_input_tokens', g.cache_write_input_tokens,
          'reasoning_tokens', g.reasoning_tokens,
          'cost_usd', g.cost_usd::text,
          'estimated', g.estimated,
          'ttft_ms', g.ttft_ms,
          'duration_ms', g.duration_ms,
          'provider_code', g.provider_code,
          'provider_message', g.provider_message
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
