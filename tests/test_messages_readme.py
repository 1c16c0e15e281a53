"""The README's Anthropic SDK snippet, run as written against a live gateway."""

from __future__ import annotations

from tests.conftest import Live
from tests.support.readme import run_python


async def test_the_readme_snippet_runs(live: Live) -> None:
    text, cost = await run_python("messages", live)
    assert len(text.split()) == 40  # the whole answer, across the fallback
    assert cost > 0
