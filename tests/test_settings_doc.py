"""docs/configuration.md is the settings class written out; .env.example names only real settings; every
setting is read by something."""

from __future__ import annotations

import re
from pathlib import Path

from gateway import settings_doc
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
APP_DIRS = ("gateway", "sessions", "providers")


def test_configuration_reference_is_generated_from_the_settings_class() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert text == settings_doc.render(), "docs/configuration.md is stale: run python -m gateway.settings_doc"
    assert settings_doc.main(["--check"]) == 0


def test_every_setting_has_a_row_with_its_default_and_description() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \|.*$", text, re.M)}
    assert set(rows) == {name.upper() for name in Settings.model_fields}
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name} has no Field(description=...)"
        assert info.description.split("(")[0].strip()[:30] in rows[name.upper()]
    assert "| `GATEWAY_MAX_CONCURRENT_STREAMS` | `8` |" in text
    assert "| `SUPABASE_ANON_KEY` | unset |" in text
    assert "One of `sqlite`, `postgres`, `supabase`." in rows["GATEWAY_STORE"]
    # The JSON settings have their format written out, not a pointer into the source.
    assert '"api_key_env"' in text and '"upstream"' in text


def test_env_example_names_only_real_settings() -> None:
    names = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(encoding="utf-8"), re.M)
    assert names, ".env.example declares nothing"
    assert set(names) - {n.upper() for n in Settings.model_fields} == set()


def _app_sources() -> str:
    files = [p for d in APP_DIRS for p in (ROOT / d).rglob("*.py") if p.name not in ("settings.py", "settings_doc.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def test_every_setting_is_read_by_the_app() -> None:
    sources = _app_sources()
    own = (ROOT / "gateway" / "settings.py").read_text(encoding="utf-8")
    derived = own[own.index("# -- derived") :]  # properties the app reads instead of the raw field
    unread = [
        name
        for name in Settings.model_fields
        if not re.search(rf"\.{name}\b", sources) and not re.search(rf"self\.{name}\b", derived)
    ]
    assert unread == [], f"settings nothing reads (drop them, or use them): {unread}"
