-- What the provider itself answered when an attempt failed: its own code (OpenAI's error.code or type,
-- Anthropic's error.type, Gemini's status, or the HTTP status) and its message, cut to 300 characters by the
-- gateway with anything shaped like a key masked. Both null for an attempt that did not fail, or whose failure
-- the provider never described (a stall, a dropped connection). Rows written before this migration keep nulls.

alter table public.stream_segments
  add column provider_code text check (length(provider_code) <= 100),
  add column provider_message text check (length(provider_message) <= 300);

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
    cached_input_tokens, reasoning_tokens, cost_usd, estimated, ttft_ms, duration_ms, started_at,
    provider_code, provider_message
  )
  select
    s.stream_id, g.segment, s.user_id, g.provider, g.model, g.status, g.reason, g.input_tokens,
    g.output_tokens, g.cached_input_tokens, g.reasoning_tokens, g.cost_usd, g.estimated, g.ttft_ms,
    g.duration_ms, s.started_at, g.provider_code, g.provider_message
  from jsonb_to_recordset(p_streams) as s (stream_id text, user_id uuid, started_at timestamptz, segments jsonb)
  cross join lateral jsonb_to_recordset(coalesce(s.segments, '[]'::jsonb)) as g (
    segment integer, provider text, model text, status text, reason text, input_tokens bigint,
    output_tokens bigint, cached_input_tokens bigint, reasoning_tokens bigint, cost_usd numeric,
    estimated boolean, ttft_ms double precision, duration_ms double precision, provider_code text,
    provider_message text
  )
  on conflict (stream_id, segment) do nothing;

  return v_new;
end
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
