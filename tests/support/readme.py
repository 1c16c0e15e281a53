"""The README's SDK snippets, taken as written (each block marked `<!-- snippet: name -->`) and run against a
live gateway."""

from __future__ import annotations

import asyncio
import contextlib
import io
from decimal import Decimal
from pathlib import Path

from tests.conftest import Live

README = Path(__file__).resolve().parent.parent.parent / "README.md"
README_URL = "http://127.0.0.1:8000"


def snippet(name: str, lang: str = "python") -> str:
    """The code of the block the README marks as snippet `name`."""
    marker = f"<!-- snippet: {name} -->\n```{lang}\n"
    text = README.read_text()
    assert text.count(marker) == 1, f"the README has no single {lang} snippet marked {name!r}"
    return text.split(marker, 1)[1].split("```", 1)[0]


async def run_python(name: str, live: Live) -> tuple[str, Decimal]:
    """Run Python snippet `name` against `live` with its token as `TOKEN`: what it printed before its closing
    "cost:" line, and that cost."""
    code = snippet(name)
    assert README_URL in code  # else it would not be pointed at `live`
    code = code.replace(README_URL, live.url)
    out = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md ({name})", "exec"), {"TOKEN": live.token})  # noqa: S102 (our own README)

    await asyncio.to_thread(run)  # the snippets use the sync clients
    text, found, cost = out.getvalue().rpartition("\ncost: ")
    assert found, f"snippet {name!r} printed no cost: {out.getvalue()!r}"
    return text, Decimal(cost.strip())
