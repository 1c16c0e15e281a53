"""The configuration reference, docs/configuration.md, written from the settings class.

    python -m gateway.settings_doc           # rewrite docs/configuration.md
    python -m gateway.settings_doc --check   # exit 1 if it is out of date

Every setting's row comes from its field: the environment variable (the field name), the default, the
allowed values or range, and the description. A test keeps the file and the class in step.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

import annotated_types
from pydantic.fields import FieldInfo

from gateway.settings import Settings

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# Sections in declaration order, each named by its first setting (a new setting joins the section it is declared in).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("Process", "gateway_env"),
    ("Sign-in and tokens", "supabase_url"),
    ("Storage", "gateway_store"),
    ("Providers and models", "gateway_allow_operator_keys"),
    ("Limits and timeouts", "gateway_max_concurrent_streams"),
    ("Edge", "gateway_cors_origins"),
    ("Observability", "otel_exporter_otlp_endpoint"),
)

HEADER = """# Configuration

<!-- Written by `python -m gateway.settings_doc` from gateway/settings.py: edit the descriptions there. -->

The gateway reads its settings from the environment, or from a `.env` file in the directory it starts in
([`.env.example`](../.env.example) is a starting point). Names are case-insensitive. Settings are checked once
at start: a wrong value stops the gateway with a message naming it, and `GATEWAY_ENV=production` refuses the
development defaults."""


def _default(info: FieldInfo) -> str:
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def _allowed(info: FieldInfo) -> str:
    """The values or the range a setting accepts, as a sentence (empty when any value of its type goes)."""
    tp = info.annotation
    options = (tp,) if typing.get_origin(tp) is typing.Literal else typing.get_args(tp)
    choices = [value for option in options for value in _literal_values(option)]
    if choices:
        return "One of " + ", ".join(f"`{c}`" for c in choices) + "."
    low = high = None
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = f"at least {rule.ge}"
        elif isinstance(rule, annotated_types.Gt):
            low = f"more than {rule.gt}"
        elif isinstance(rule, annotated_types.Le):
            high = f"at most {rule.le}"
    bounds = ", ".join(b for b in (low, high) if b)
    return bounds[:1].upper() + bounds[1:] + "." if bounds else ""


def _literal_values(tp: object) -> list[str]:
    return [str(v) for v in typing.get_args(tp)] if typing.get_origin(tp) is typing.Literal else []


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _details(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    if isinstance(extra, dict):
        details = extra.get("details")
        if isinstance(details, str):
            return details
    return None


def render() -> str:
    fields = Settings.model_fields
    starts = {first: title for title, first in SECTIONS}
    missing = set(starts) - set(fields)
    if missing:
        raise ValueError(f"sections start at unknown settings: {sorted(missing)}")
    out = [HEADER]
    details: list[tuple[str, str]] = []
    for name, info in fields.items():
        if name in starts:
            out.append(f"\n## {starts[name]}\n\n| Variable | Default | Meaning |\n|---|---|---|")
        if not info.description:
            raise ValueError(f"setting {name} has no description")
        meaning = " ".join(p for p in (info.description, _allowed(info)) if p)
        extra = _details(info)
        if extra is not None:
            meaning += f" Format: [below](#{name.lower()})."
            details.append((name, extra))
        out.append(f"| `{name.upper()}` | {_default(info)} | {_cell(meaning)} |")
    if details:
        out.append("\n## Formats")
        for name, text in details:
            out.append(f'\n### <a id="{name.lower()}"></a>`{name.upper()}`\n\n{text}')
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.settings_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is out of date: run python -m gateway.settings_doc", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
