"""Mid-stream policies and stalls through the live gateway (WebSocket), with the built-in mock models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import websockets

from tests.conftest import Live
from tests.support.clients import user_msg


async def stream(live: Live, frame: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.start", "id": "c1", "model": "mock", **frame}))
        async with asyncio.timeout(15):
            while True:
                f = json.loads(await ws.recv())
                if f.get("id") == "c1" and f.get("stream_id"):
                    out.append(f)
                    if f["type"] in ("done", "error"):
                        return out


def text(frames: list[dict[str, Any]]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "delta")


async def test_continue_policy_reads_as_one_answer(live: Live) -> None:
    broken = await stream(live, {"messages": user_msg("q [[mock tokens=10 fail_after=4 only=mock]]")})
    whole = await stream(live, {"model": "mock-backup", "messages": user_msg("q [[mock tokens=10]]")})
    assert broken[-1]["type"] == "done" and text(broken) == text(whole)
    (fb,) = [f for f in broken if f["type"] == "fallback"]
    first_four = " ".join(text(whole).split(" ")[:4])
    assert (fb["mode"], fb["reason"], fb["chars_so_far"]) == ("continue", "server_error", len(first_four))
    assert [s["status"] for s in broken[-1]["segments"]] == ["failed", "ok"]
    assert broken[-1]["segments"][1]["failover_ms"] is not None


async def test_restart_policy_tells_the_client_to_discard(live: Live) -> None:
    frames = await stream(
        live,
        {"messages": user_msg("q [[mock tokens=6 fail_after=3 only=mock]]"), "on_midstream_failure": "restart"},
    )
    whole = await stream(live, {"model": "mock-backup", "messages": user_msg("q [[mock tokens=6]]")})
    (fb,) = [f for f in frames if f["type"] == "fallback"]
    assert fb["mode"] == "restart" and fb["chars_so_far"] > 0
    after = frames[frames.index(fb) :]
    assert text(after) == text(whole)  # the whole answer again, from its first word
    assert frames[-1]["type"] == "done"


async def test_error_policy_ends_with_midstream_failed(live: Live) -> None:
    frames = await stream(
        live,
        {"messages": user_msg("q [[mock tokens=6 fail_after=3 only=mock]]"), "on_midstream_failure": "error"},
    )
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "midstream_failed" and err["retryable"] is True
    assert err["attempts"] == [
        {
            "model": "mock",
            "provider": "mock",
            "reason": "server_error",
            "segment": 1,
            "provider_code": None,  # the mock's fault is its own, not an upstream's answer
            "provider_message": None,
        }
    ]
    assert not [f for f in frames if f["type"] == "fallback"]


async def test_a_stalled_model_is_abandoned_for_the_next(live_factory: Callable[..., Any]) -> None:
    live: Live = await live_factory(gateway_inter_token_timeout_s=0.2)
    frames = await stream(live, {"messages": user_msg("q [[mock tokens=6 fail_after=2 fail=stall only=mock]]")})
    (fb,) = [f for f in frames if f["type"] == "fallback"]
    assert fb["reason"] == "stalled" and fb["mode"] == "continue"
    assert frames[-1]["type"] == "done" and len(text(frames).split(" ")) == 6


async def test_when_every_model_fails_the_error_names_each_attempt(live: Live) -> None:
    frames = await stream(live, {"messages": user_msg("q [[mock fail_after=0 fail=overloaded]]")})
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "all_models_failed"
    reasons = [(a["model"], a["reason"]) for a in err["attempts"]]
    # Each model was retried before the chain moved on; every attempt is listed.
    assert reasons == [("mock", "overloaded")] * 3 + [("mock-backup", "overloaded")] * 3
    assert len([f for f in frames if f["type"] == "usage"]) == 6


def applied(frames: list[dict[str, Any]]) -> str:
    """The text a client holds after applying every frame: a `seam` keeps the first `keep_chars` characters."""
    held = ""
    for f in frames:
        if f["type"] == "delta":
            held += f["text"]
        elif f["type"] == "seam":
            assert len(held) == f["keep_chars"] + f["discard_chars"]
            held = held[: f["keep_chars"]]
    return held


async def test_a_continuation_that_starts_over_is_cut_silently(live: Live) -> None:
    frames = await stream(
        live, {"messages": user_msg("q [[mock tokens=10 fail_after=4 only=mock on_continue=repeat]]")}
    )
    whole = await stream(live, {"model": "mock-backup", "messages": user_msg("q [[mock tokens=10]]")})
    assert frames[-1]["type"] == "done" and text(frames) == text(whole)  # the repeat never reached the client
    assert not [f for f in frames if f["type"] == "seam"]


async def test_a_continuation_that_rewrites_the_answer_tells_the_client_what_to_drop(live: Live) -> None:
    frames = await stream(
        live, {"messages": user_msg("q [[mock tokens=10 fail_after=6 only=mock on_continue=rewrite]]")}
    )
    (fb,) = [f for f in frames if f["type"] == "fallback"]
    (seam,) = [f for f in frames if f["type"] == "seam"]
    assert frames.index(fb) < frames.index(seam)
    held = text(frames[: frames.index(seam)])
    assert seam["reason"] == "continuation_restarted"
    assert seam["keep_chars"] + seam["discard_chars"] == len(held) and held[seam["keep_chars"] :].count(" ") == 1
    answer = applied(frames)
    assert len(answer.split(" ")) == 10 and answer.startswith(held[: seam["keep_chars"]])
    done = frames[-1]
    assert done["type"] == "done" and [s["status"] for s in done["segments"]] == ["failed", "ok"]


async def test_retries_follow_the_setting(live_factory: Callable[..., Any]) -> None:
    live: Live = await live_factory(gateway_retries=1)
    frames = await stream(live, {"messages": user_msg("q [[mock fail_after=0 fail=overloaded]]")})
    err = frames[-1]
    assert [(a["model"], a["reason"]) for a in err["attempts"]] == [("mock", "overloaded")] * 2 + [
        ("mock-backup", "overloaded")
    ] * 2
