"""A browser client with a Supabase-shaped (ES256, JWKS) token: streams over fetch, drops, and resumes with a
single-use ticket and a real `EventSource`; a browser `WebSocket` does the same with `?ticket=` and
`chat.resume`; a stop reaches the ledger. Headless Chromium against a real gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Live
from tests.support.clients import collect_sse, text_of, user_msg
from tests.support.jwks import IdentityProvider, identity_provider

pytestmark = pytest.mark.browser

# Runs in the page. Starts a stream with fetch (headers allowed there), drops it after `k` events, then
# resumes the way a page must: EventSource cannot send headers, so a fresh ticket goes in the URL.
SSE_DROP_AND_RESUME = """
async ([token, prompt, k]) => {
  const auth = {authorization: `Bearer ${token}`};
  const abort = new AbortController();
  const res = await fetch('/v1/chat/stream', {method: 'POST', signal: abort.signal,
    headers: {...auth, 'content-type': 'application/json'},
    body: JSON.stringify({model: 'mock', messages: [{role: 'user', content: prompt}]})});
  const sid = res.headers.get('x-stream-id');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '', first = [];
  while (first.length < k) {
    const {value} = await reader.read();
    buffer += decoder.decode(value, {stream: true});
    let i;
    while ((i = buffer.indexOf('\\n\\n')) >= 0 && first.length < k) {
      const block = buffer.slice(0, i); buffer = buffer.slice(i + 2);
      const data = block.split('\\n').find(l => l.startsWith('data: '));
      if (data) first.push(JSON.parse(data.slice(6)));
    }
  }
  abort.abort();  // the tab loses its connection
  const ticket = async () => (await (await fetch('/v1/tickets', {method: 'POST', headers: auth})).json()).ticket;
  const t1 = await ticket();
  const rest = await new Promise((resolve, reject) => {
    const got = [];
    const es = new EventSource(`/v1/streams/${sid}/events?ticket=${t1}&after=${first[first.length - 1].seq}`);
    const onEvent = (e) => {
      const d = JSON.parse(e.data);
      got.push({...d, lastEventId: e.lastEventId});
      if (d.type === 'done' || d.type === 'error') { es.close(); resolve(got); }
    };
    for (const name of ['stream.started', 'delta', 'usage', 'done', 'error']) es.addEventListener(name, onEvent);
    es.onerror = () => { es.close(); reject(new Error('EventSource failed')); };
  });
  // The used ticket opens nothing: a browser's automatic EventSource retry with it fails for good.
  const replay = await new Promise((resolve) => {
    const es = new EventSource(`/v1/streams/${sid}/events?ticket=${t1}`);
    es.onerror = () => { resolve(es.readyState); es.close(); };
    es.onmessage = () => resolve('opened');
  });
  return {sid, first, rest, replay};
}
"""

WS_DROP_AND_RESUME = """
async ([token, prompt, k]) => {
  const auth = {authorization: `Bearer ${token}`};
  const ticket = async () => (await (await fetch('/v1/tickets', {method: 'POST', headers: auth})).json()).ticket;
  const url = (t) => `ws://${location.host}/v1/ws?ticket=${t}`;
  const open = (t) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url(t)); ws.onopen = () => resolve(ws); ws.onerror = reject;
  });
  const ws1 = await open(await ticket());
  const first = await new Promise((resolve) => {
    const got = [];
    ws1.onmessage = (m) => { got.push(JSON.parse(m.data)); if (got.length === k) resolve(got); };
    ws1.send(JSON.stringify({type: 'chat.start', id: 'c1', model: 'mock',
                             messages: [{role: 'user', content: prompt}]}));
  });
  ws1.onmessage = null;
  ws1.close();
  const ws2 = await open(await ticket());
  const rest = await new Promise((resolve) => {
    const got = [];
    ws2.onmessage = (m) => {
      const f = JSON.parse(m.data); got.push(f);
      if (f.type === 'done' || f.type === 'error') resolve(got);
    };
    ws2.send(JSON.stringify({type: 'chat.resume', stream_id: first[0].stream_id, last_seq: first[k - 1].seq}));
  });
  // Stop: a second stream on the same socket, cancelled after a few deltas.
  const stopped = await new Promise((resolve) => {
    const got = [];
    ws2.onmessage = (m) => {
      const f = JSON.parse(m.data); got.push(f);
      if (got.filter(x => x.type === 'delta').length === 3 && !got.cancelSent) {
        got.cancelSent = true; ws2.send(JSON.stringify({type: 'chat.cancel', id: 's1'}));
      }
      if (f.type === 'done') resolve(got);
    };
    ws2.send(JSON.stringify({type: 'chat.start', id: 's1', model: 'mock',
      messages: [{role: 'user', content: 'stop me [[mock tokens=5000 delay_ms=3]]'}]}));
  });
  ws2.close();
  return {first, rest, stopped};
}
"""


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with identity_provider("ES256") as server:
        yield server


async def reference(gw: Live, prompt: str) -> str:
    async with httpx.AsyncClient(timeout=20) as c:
        events = await collect_sse(
            c,
            "POST",
            f"{gw.url}/v1/chat/stream",
            headers=gw.headers(),
            json={"model": "mock", "messages": user_msg(prompt)},
        )
    return text_of([e.data for e in events])


def exact(first: list[dict[str, Any]], rest: list[dict[str, Any]], expected: str) -> None:
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert text_of(first + rest) == expected
    assert rest[-1]["type"] == "done" and rest[-1]["finish_reason"] == "stop"


async def test_browser_resumes_with_tickets(
    new_page: Callable[..., Any], live_factory: Callable[..., Any], idp: IdentityProvider
) -> None:
    gw: Live = await live_factory(supabase_url=idp.url)
    token = idp.sign()
    errors: list[str] = []
    page = await new_page(f"{gw.url}/healthz", errors)

    prompt = "browser sse [[mock tokens=50 delay_ms=10]]"
    out = await page.evaluate(SSE_DROP_AND_RESUME, [token, prompt, 6])
    exact(out["first"], out["rest"], await reference(gw, prompt))
    assert all(e["lastEventId"] == f"{out['sid']}:{e['seq']}" for e in out["rest"])
    assert out["replay"] == 2  # EventSource.CLOSED: the spent ticket was refused

    prompt = "browser ws [[mock tokens=50 delay_ms=10]]"
    out = await page.evaluate(WS_DROP_AND_RESUME, [token, prompt, 5])
    exact(out["first"], out["rest"], await reference(gw, prompt))
    assert all(f["id"] == "c1" for f in out["rest"])
    done = out["stopped"][-1]
    assert done["finish_reason"] == "cancelled" and 3 <= done["usage"]["output_tokens"] < 5000
    await gw.services.ledger.flush()
    assert not errors
