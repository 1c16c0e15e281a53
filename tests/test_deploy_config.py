"""render.yaml, Procfile, the settings class and the test Python version must agree."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest
import yaml

from gateway.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
# Render sets PORT itself; PYTHON_VERSION is read by Render's build, not by the app.
PLATFORM_VARS = {"PORT"}
BUILD_VARS = {"PYTHON_VERSION"}


def _web_service() -> dict[str, object]:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    return next(s for s in blueprint["services"] if s["type"] == "web")


def test_render_declares_every_setting_and_nothing_else() -> None:
    web = _web_service()
    declared = {e["key"] for e in web["envVars"]}  # type: ignore[index, union-attr]
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - PLATFORM_VARS - declared == set(), "settings missing from render.yaml"
    assert declared - fields - BUILD_VARS == set(), "render.yaml declares variables the app never reads"


def test_secrets_are_not_committed_values() -> None:
    web = _web_service()
    for entry in web["envVars"]:  # type: ignore[union-attr]
        key = entry["key"]
        if re.search(r"(_KEY|_KEYS|SECRET|_TOKEN|DATABASE_URL)$", key) and "ALLOW" not in key:
            assert "value" not in entry, f"{key} must be sync: false or generated"


def test_start_commands_agree_and_bind_render_port() -> None:
    web = _web_service()
    procfile = (ROOT / "Procfile").read_text().strip()
    assert procfile == f"web: {web['startCommand']}"
    assert "--host 0.0.0.0" in procfile and "$PORT" in procfile
    assert web["healthCheckPath"] in ("/readyz", "/healthz")


def test_python_version_is_the_one_tests_run_on() -> None:
    web = _web_service()
    pinned = next(e["value"] for e in web["envVars"] if e["key"] == "PYTHON_VERSION")  # type: ignore[union-attr]
    assert pinned == (ROOT / ".python-version").read_text().strip()
    assert pinned.rsplit(".", 1)[0] == ".".join(platform.python_version_tuple()[:2])


def test_production_refuses_development_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ENV", "production")
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert "SUPABASE_URL" in str(info.value)
    # The legacy secret alone is not enough: without the project URL no token's issuer could be checked.
    monkeypatch.setenv("SUPABASE_JWT_SECRET", "s" * 40)
    with pytest.raises(SettingsError, match="SUPABASE_URL"):
        load_settings(_env_file=None)
    monkeypatch.setenv("GATEWAY_DEV_SIGNING_KEY", "x" * 40)
    with pytest.raises(SettingsError, match="development only"):
        load_settings(_env_file=None)


def test_invalid_settings_are_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    monkeypatch.setenv("GATEWAY_MODELS", "{oops")
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    text = str(info.value)
    assert "port" in text and "gateway_models" in text
