"""render.yaml, Procfile, the settings class, the README's deploy section and the Python versions must agree."""

from __future__ import annotations

import base64
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

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


def _env_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = _web_service()["envVars"]  # type: ignore[assignment]
    return entries


def _prompts() -> dict[str, str]:
    """The `sync: false` keys (Render asks for them at creation), each with the comment on its line."""
    text = (ROOT / "render.yaml").read_text()
    found = re.findall(r"- key: (\w+)\n\s+sync: false(?: *# *(.*))?", text)
    declared = {e["key"] for e in _env_entries() if e.get("sync") is False}
    assert {k for k, _ in found} == declared
    return {key: comment for key, comment in found}


def _placeholder(key: str) -> str:
    return "https://project-ref.supabase.co" if key.endswith("_URL") else "p" * 48


def _render_environment(skip: str | None = None) -> dict[str, str]:
    """What the service's environment holds once deployed: committed values, generated ones, the Key Value
    URL, and a value for every prompt (but `skip`)."""
    env: dict[str, str] = {}
    for entry in _env_entries():
        key = entry["key"]
        if key in BUILD_VARS or key == skip:
            continue
        if "value" in entry:
            env[key] = str(entry["value"])
        elif entry.get("generateValue"):
            env[key] = base64.b64encode(os.urandom(32)).decode()  # what Render generates: 256 random bits
        elif "fromService" in entry:
            env[key] = "redis://red-example:6379"
        else:
            env[key] = _placeholder(key)
    return env


def _load(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings(_env_file=None)


def test_render_declares_only_settings_the_app_reads() -> None:
    declared = {e["key"] for e in _env_entries()}
    fields = {name.upper() for name in Settings.model_fields}
    assert declared - fields - BUILD_VARS == set(), "render.yaml declares variables the app never reads"
    assert not declared & PLATFORM_VARS, "Render sets these itself"


def test_render_sets_only_what_differs_from_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # Everything left out runs on its default, so a committed value equal to it is noise that hides the choices.
    settings = _load(monkeypatch, _render_environment())
    committed = [e["key"] for e in _env_entries() if "value" in e and e["key"] not in BUILD_VARS]
    assert committed, "render.yaml commits no settings at all"
    for key in committed:
        assert getattr(settings, key.lower()) != Settings.model_fields[key.lower()].default, f"{key} is its default"


def test_render_environment_is_a_valid_production_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(monkeypatch, _render_environment())
    assert not settings.is_dev and settings.gateway_store == "supabase"
    assert settings.redis_url is not None and settings.gateway_encryption_keys is not None
    assert not settings.gateway_mock_enabled


def test_render_prompts_for_what_a_deploy_needs_and_says_which_are_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = _prompts()
    settings = _load(monkeypatch, _render_environment())
    # Never a prompt for a value production refuses, or one this configuration ignores.
    assert "GATEWAY_DEV_SIGNING_KEY" not in prompts
    if settings.gateway_store == "supabase":
        assert "DATABASE_URL" not in prompts
    for key, comment in prompts.items():
        assert comment.startswith(("required", "optional")), f"say whether {key} is required or optional"
        try:
            _load(monkeypatch, _render_environment(skip=key))
            needed = False
        except SettingsError:
            needed = True
        if needed:
            assert comment.startswith("required"), f"{key} cannot be left out: its comment must say required"
        if comment.startswith("optional"):
            assert not needed, f"{key} is marked optional but a deploy fails without it"


def test_readme_deploy_section_names_every_prompt() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy to Render") :]
    deploy = deploy[: deploy.index("\n## ", 4)]
    for key in _prompts():
        assert f"`{key}`" in deploy, f"the README's deploy section does not say what to put in {key}"
    assert "supabase/migrations" in deploy


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


def test_python_versions_agree() -> None:
    # Render runs the pinned version; contributors and CI run any version the project supports.
    web = _web_service()
    pinned = next(e["value"] for e in web["envVars"] if e["key"] == "PYTHON_VERSION")  # type: ignore[union-attr]
    assert pinned == (ROOT / ".python-version").read_text().strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = re.fullmatch(r">=(\d+)\.(\d+)", project["project"]["requires-python"])
    assert floor is not None, "requires-python is a lower bound"
    oldest = (int(floor.group(1)), int(floor.group(2)))
    assert tuple(int(p) for p in pinned.split(".")[:2]) >= oldest, "Render would run an unsupported Python"
    assert sys.version_info[:2] >= oldest, "these tests run on an unsupported Python"
    # Lint and types are checked against the oldest supported version, so nothing newer slips in.
    assert project["tool"]["ruff"]["target-version"] == f"py{oldest[0]}{oldest[1]}"
    assert project["tool"]["mypy"]["python_version"] == f"{oldest[0]}.{oldest[1]}"


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
