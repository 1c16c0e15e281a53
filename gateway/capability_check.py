"""The check a face makes before a stream starts: what the first model cannot honour of the request is refused
with `unsupported_parameter`, naming the field as that face's clients name it, and the model.

(The router checks each fallback itself: one that cannot honour the request's shape is skipped, `cannot_honour`.)
"""

from __future__ import annotations

from collections.abc import Mapping

from providers.base import ChatRequest
from providers.capabilities import Param, unsupported
from providers.catalog import ModelSpec
from sessions.errors import fail


def refuse_unsupported(spec: ModelSpec, request: ChatRequest, names: Mapping[Param, str]) -> None:
    found = unsupported(spec, request)
    if not found:
        return
    first = found[0]
    param = first.field_in(names)
    others = "".join(f"; {u.field_in(names)}: {u.reason}" for u in found[1:])
    raise fail(
        "unsupported_parameter",
        f"{param}: model {spec.id!r} {first.reason}{others}",
        details={"param": param, "model": spec.id},
    )
