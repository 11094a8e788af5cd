"""The settings model: pydantic's constraints and sources, one error line naming every missing or
invalid setting, the secret settings named once, and the pure rules shared with the early clone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError

from git_import.errors import ConfigError
from git_import.redact import MASK, SECRET_SETTINGS, scrub
from git_import.rules import env
from git_import.settings import (
    SECRET_FIELDS,
    SETTING_PREFIXES,
    Settings,
    load_settings,
    settings_reference,
)

PROCESS = "00000000-0000-4000-8000-000000000001"
TASK = "00000000-0000-4000-8000-000000000002"
PONOS = {
    "PONOS_PROCESS": PROCESS,
    "PONOS_TASK": TASK,
    "ARKINDEX_API_URL": "https://arkindex.example.com",
    "ARKINDEX_TASK_TOKEN": "task-token-settings-test",
    "REPOSITORY_URL": "https://gitlab.example.com/group/workers.git",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch):
    """Set exactly these settings in the environment."""
    for name in os.environ:
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)

    def set_env(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def error_of(command: str | None = None, **overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(command, **overrides)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_every_wrong_value_is_named_not_just_the_first(environ) -> None:
    environ({**PONOS, "PONOS_TASK": "42", "FAN_OUT_CONCURRENCY": "99", "GIT_TIMEOUT": "soon"})
    assert error_of() == (
        "3 settings are missing or invalid: "
        "PONOS_TASK: is not a valid UUID (set PONOS_TASK to the UUID of the running task); "
        "FAN_OUT_CONCURRENCY: must be from 1 to 32 (set FAN_OUT_CONCURRENCY to a whole number from 1 to 32); "
        "GIT_TIMEOUT: is not a whole number (set GIT_TIMEOUT to a whole number of seconds, at least 1)"
    )


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"RETRY_BASE_DELAY": "31"}, "RETRY_BASE_DELAY: must be from 0 to 30"),
        ({"GIT_STALL_TIMEOUT": "0"}, "GIT_STALL_TIMEOUT: must be at least 1"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: must be 'text' or 'json'"),
        ({"WORKER_UPDATE": "maybe"}, "WORKER_UPDATE: must be 1 or 0 (or true/false, yes/no, on/off)"),
        ({"REPOSITORY_PATHS": "src,-x"}, "REPOSITORY_PATHS entry '-x' starts with '-'"),
        ({"REPOSITORY_URL": "ftp://h/x.git"}, "REPOSITORY_URL uses the unsupported scheme 'ftp://'"),
    ],
)
def test_a_wrong_value_is_one_line_in_the_projects_words(environ, values: dict, line: str) -> None:
    environ({**PONOS, **values})
    error = error_of("trigger")
    assert error.startswith(line + " ("), error
    assert "Input should" not in error and ";" not in error


def test_values_are_normalised_by_the_shared_rules(environ) -> None:
    environ(
        {
            **PONOS,
            "REPOSITORY_URL": " https://gitlab.example.com/group/workers.git ",
            "REPOSITORY_REF": " main ",
            "REPOSITORY_BEFORE": "A" * 40,
            "REPOSITORY_ALLOW_LOCAL": "off",
            "MAX_REVISIONS": " 7 ",
        }
    )
    settings = load_settings("trigger")
    assert settings.repository_url == "https://gitlab.example.com/group/workers.git"
    assert settings.repository_ref == "main"
    assert settings.before == "a" * 40
    assert (settings.repository_allow_local, settings.max_revisions) == (False, 7)
    assert settings.repository_username == env.DEFAULT_USERNAME
    assert (settings.git_stall_timeout, settings.git_timeout) == (
        env.GIT_STALL_TIMEOUT.default,
        env.GIT_TIMEOUT.default,
    )


def test_local_paths_follow_repository_allow_local(environ, tmp_path: Path) -> None:
    environ({**PONOS, "REPOSITORY_URL": str(tmp_path), "REPOSITORY_ALLOW_LOCAL": "yes"})
    assert load_settings("trigger").repository_url == str(tmp_path)


def test_the_workflow_message_stays_among_others(environ) -> None:
    environ({"REPOSITORY_URL": PONOS["REPOSITORY_URL"], "PONOS_WORKFLOW": PROCESS, "PONOS_TASK": TASK})
    error = error_of("trigger")
    assert error.startswith(
        "3 settings are missing or invalid: PONOS_WORKFLOW is set but PONOS_PROCESS is not: the Ponos agent "
        "no longer provides PONOS_WORKFLOW since Arkindex merged workflows into processes (set "
    ), error


def test_check_required_names_what_each_command_lacks(environ) -> None:
    environ({"REPOSITORY_URL": PONOS["REPOSITORY_URL"], "ARKINDEX_API_TOKEN": "user-token-1234"})
    settings = load_settings()
    settings.check_required("trigger --dry-run")
    with pytest.raises(ConfigError, match=r"^2 settings .*REPOSITORY_REVISION is not set.*ARKINDEX_API_URL"):
        settings.check_required("revision")
    assert [str(e).split(" ")[0] for e in settings.missing_settings("trigger")] == [
        "PONOS_PROCESS",
        "PONOS_TASK",
        "ARKINDEX_API_URL",
    ]


def test_the_older_checks_keep_their_messages(environ) -> None:
    environ({})
    settings = load_settings()
    with pytest.raises(ConfigError, match=r"^REPOSITORY_URL is not set \(set REPOSITORY_URL"):
        settings.require_repository()
    with pytest.raises(ConfigError, match=r"^2 settings .*PONOS_PROCESS is not set.*PONOS_TASK is not set"):
        settings.require_process()
    with pytest.raises(ConfigError, match=r"ARKINDEX_API_URL is not set.*neither ARKINDEX_TASK_TOKEN"):
        settings.require_api()


# --- the push event, a settings source below the environment -----------------------------------------


def write_event(tmp_path: Path, **values: str) -> Path:
    payload = {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "before": "1" * 40,
        "after": "2" * 40,
        "project": {"git_http_url": "https://gitlab.example.com/group/from-event.git"},
        **values,
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return path


def test_the_event_fills_what_the_environment_leaves_unset(environ, tmp_path: Path) -> None:
    event = write_event(tmp_path)
    environ({**PONOS, "REPOSITORY_URL": "", "REPOSITORY_EVENT": str(event), "REPOSITORY_BEFORE": "3" * 40})
    settings = load_settings("trigger")
    assert settings.repository_url == "https://gitlab.example.com/group/from-event.git"
    assert settings.repository_before == "3" * 40  # the environment wins
    assert settings.repository_after == "2" * 40
    assert load_settings(repository_after="4" * 40).repository_after == "4" * 40  # code wins over both


def test_an_event_named_by_code_is_read(environ, tmp_path: Path) -> None:
    environ({})
    settings = load_settings(repository_event=str(write_event(tmp_path)))
    assert settings.repository_ref == "refs/heads/main"


def test_the_event_values_are_checked_like_the_environments(environ, tmp_path: Path) -> None:
    event = write_event(tmp_path, after="not-a-hash")
    environ({**PONOS, "REPOSITORY_EVENT": str(event)})
    assert error_of("trigger").startswith("REPOSITORY_AFTER: not a full 40-character commit hash")


# --- secrets, named once -------------------------------------------------------------------------


def test_the_secret_settings_are_the_fields_typed_secretstr() -> None:
    typed = {field for field, info in Settings.model_fields.items() if SecretStr in _types(info.annotation)}
    assert typed == SECRET_FIELDS
    assert len(SECRET_FIELDS) == len(SECRET_SETTINGS)


def _types(annotation: object) -> set[object]:
    return {annotation, *getattr(annotation, "__args__", ())}


def test_the_readme_marks_exactly_the_secret_settings() -> None:
    marked = {
        line.split("`")[1]
        for line in settings_reference().splitlines()
        if line.split("|")[3].strip() == "yes"
    }
    assert marked == SECRET_SETTINGS


def test_every_secret_setting_is_masked_once_loaded(environ) -> None:
    values = {name: f"{name.lower()}-s3cret-value" for name in SECRET_SETTINGS}
    # A key is read as a whole key file only.
    key = values["REPOSITORY_SSH_KEY"]
    values["REPOSITORY_SSH_KEY"] = (
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key}\n-----END OPENSSH PRIVATE KEY-----"
    )
    environ({**PONOS, **values})
    load_settings("trigger")
    for value in values.values():
        assert scrub(f"said {value}") == f"said {MASK}"


# --- the pure rules, shared with the early clone --------------------------------------------------


@pytest.mark.parametrize("text", ["1", "0", "true", "False", " yes ", "NO", "on", "off", "t", "f", "y", "n"])
def test_booleans_parse_as_pydantic_parses_them(text: str) -> None:
    # Around the word, spaces are forgiven (as around a number); pydantic alone would refuse them.
    assert env.parse_bool(text) is TypeAdapter(bool).validate_python(text.strip())


@pytest.mark.parametrize("text", ["2", "maybe", "", "yes please"])
def test_what_pydantic_refuses_as_a_boolean_the_rule_refuses(text: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(bool).validate_python(text)
    with pytest.raises(ValueError):
        env.parse_bool(text)


@pytest.mark.parametrize(("text", "number"), [("5", 5), (" 60 ", 60), ("+3", 3), ("-5", -5)])
def test_whole_numbers(text: str, number: int) -> None:
    assert env.whole_number(text) == number


@pytest.mark.parametrize("text", ["1.5", "1_000", "٣", "soon", "", "+-1"])
def test_what_is_not_a_whole_number(text: str) -> None:
    with pytest.raises(ValueError, match="is not a whole number"):
        env.whole_number(text)


def test_a_numbers_bounds_are_the_models() -> None:
    for field, rule in [
        ("max_revisions", env.MAX_REVISIONS),
        ("fan_out_concurrency", env.FAN_OUT_CONCURRENCY),
        ("retry_attempts", env.RETRY_ATTEMPTS),
        ("retry_base_delay", env.RETRY_BASE_DELAY),
        ("git_stall_timeout", env.GIT_STALL_TIMEOUT),
        ("git_timeout", env.GIT_TIMEOUT),
    ]:
        info = Settings.model_fields[field]
        bounds = {key: getattr(m, key) for m in info.metadata for key in ("ge", "le") if hasattr(m, key)}
        assert (info.default, bounds.get("ge"), bounds.get("le")) == (rule.default, rule.low, rule.high)
    assert env.GIT_TIMEOUT.parse(None) == 1800
    with pytest.raises(ValueError):
        env.FAN_OUT_CONCURRENCY.parse("33")


def test_the_rules_import_no_pydantic() -> None:
    code = (
        "import sys, git_import.rules.env, git_import.early, git_import.redact\n"
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
