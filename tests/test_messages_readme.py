"""The README's Anthropic SDK snippet, run as written against a live gateway."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path

from tests.conftest import Live

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (found,) = [b for b in blocks if "from anthropic import Anthropic" in b]
    return found


async def test_the_readme_snippet_runs(live: Live) -> None:
    code = snippet().replace("http://127.0.0.1:8000", live.url)
    out = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"TOKEN": live.token})  # noqa: S102 (our own README)

    await asyncio.to_thread(run)
    text, _, cost = out.getvalue().rpartition("\ncost: ")
    assert len(text.split()) == 40  # the whole answer, across the fallback
    assert float(cost) > 0
