"""Logs as Ponos shows them (issue 6): plain lines or one JSON object a line (`LOG_FORMAT=json`), clone
progress without carriage returns, fan-out progress `created N/M`, and one closing summary line with the
timings of each phase.

The tool runs as Ponos runs it (a child process, real git over `git http-backend`, the emulator through
the real arkindex-client), except for the intermediate progress lines: they come every few seconds, so
one test runs the trigger in this process with the progress interval set to zero instead of waiting.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path

import pytest

from git_import import logs, trigger
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.settings import SETTING_PREFIXES, load_settings

from conftest import Ponos, Result, run_tool

LEVELS = {"debug", "info", "warning", "error", "critical"}
PHASES = ("process", "clone", "select", "fan-out", "total")


@pytest.fixture
def pushed(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer) -> dict[str, str]:
    """A served repository and a push of three commits after an initial one: the trigger's settings."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    for i in range(3):
        repo.commit(f"Change {i}", {"arkindex/hello.yml": worker_yaml("hello", "Hello", f"Version {i}")})
    repo.publish(git_root / "workers.git")
    return {
        "REPOSITORY_URL": git_server.url("workers.git"),
        "REPOSITORY_REF": "main",
        "REPOSITORY_BEFORE": base,
        "REPOSITORY_AFTER": repo.head(),
        "FAN_OUT_CONCURRENCY": "1",
    }


def json_records(stderr: str) -> list[dict]:
    """Every non-empty stderr line as a JSON object with time, level and message; fails on any other line."""
    records = []
    for number, line in enumerate(stderr.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stderr line {number} is not JSON: {line!r}\n--- stderr ---\n{stderr}")
        assert isinstance(record, dict), line
        assert {"time", "level", "message"} <= record.keys(), line
        assert record["level"] in LEVELS, line
        assert isinstance(record["message"], str), line
        datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
        records.append(record)
    return records


def messages(result: Result, fmt: str) -> list[str]:
    if fmt == "json":
        return [record["message"] for record in json_records(result.stderr)]
    return [line for line in result.stderr.splitlines() if line.strip()]


def summary_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"\btrigger (done|FAILED):", line)]


def test_json_log_format_gives_one_object_a_line(
    git_root: Path, git_server: GitHTTPServer, repo: RepoBuilder
) -> None:
    """A dry run with no Arkindex setting at all: every stderr line is one JSON object."""
    repo.commit("Initial commit", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.publish(git_root / "workers.git")

    result = run_tool(
        ["trigger", "--dry-run"],
        {"REPOSITORY_URL": git_server.url("workers.git"), "LOG_FORMAT": "json"},
    )

    assert result.code == 0, result.output
    records = json_records(result.stderr)
    assert any(r["message"].startswith("cloning ") for r in records), records
    assert "\r" not in result.stderr
    assert repo.head()[:7] in result.stdout  # the plan itself goes to stdout, as a table


def test_json_log_format_on_a_failure(tmp_path: Path) -> None:
    """An error is one JSON object too, and so is the line saying nothing was created."""
    result = run_tool(["trigger"], {"LOG_FORMAT": "json", "PONOS_DATA": str(tmp_path)})

    assert result.code == 2, result.output
    records = json_records(result.stderr)
    assert records and all(r["level"] == "error" for r in records), records
    assert "REPOSITORY_URL" in records[0]["message"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_trigger_logs_fan_out_progress_and_one_summary_with_timings(
    ponos: Ponos, pushed: dict[str, str], fmt: str
) -> None:
    result = ponos.run_trigger({**pushed, "LOG_FORMAT": fmt})

    assert result.code == 0, result.output
    assert len(ponos.children()) == 3
    lines = messages(result, fmt)
    created = [line for line in lines if re.search(r"\bcreated \d+/\d+$", line)]
    assert created and created[-1].endswith("created 3/3"), lines
    summaries = summary_lines(lines)
    assert len(summaries) == 1, lines
    (summary,) = summaries
    assert "3 created" in summary, summary
    for phase in PHASES:
        assert re.search(rf"\b{phase} \d+\.\d\ds\b", summary), f"no {phase} timing in {summary!r}"
    assert summary == lines[-1], "the summary is not the closing line"
    # Ponos shows logs as plain lines: git's carriage-return progress bars never reach them.
    assert "\r" not in result.stderr
    assert "\r" not in result.stdout


def test_a_rerun_still_ends_with_one_summary(ponos: Ponos, pushed: dict[str, str]) -> None:
    assert ponos.run_trigger(pushed).code == 0
    result = ponos.run_trigger(pushed)

    assert result.code == 0, result.output
    summaries = summary_lines(result.stderr.splitlines())
    assert len(summaries) == 1, result.stderr
    assert "0 created, 3 already there" in summaries[0], summaries[0]
    assert not re.search(r"\bcreated \d+/\d+", result.stderr), "progress for a fan-out with nothing to create"


def test_fan_out_reports_progress_at_each_interval(
    ponos: Ponos, pushed: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With the interval at zero every created task reports a line: the steady `created N/M` progress,
    seen without waiting for the real interval. Clone progress lines carry no carriage return."""
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in {**ponos.env, **pushed}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(logs, "PROGRESS_INTERVAL", 0.0)  # the fan-out's and the clone's
    caplog.set_level(logging.INFO)

    status = trigger.run_trigger(load_settings())

    assert status == 0, caplog.text
    progress = [r.getMessage() for r in caplog.records if re.fullmatch(r"created \d+/\d+", r.getMessage())]
    assert progress == ["created 1/3", "created 2/3", "created 3/3"]
    assert not any("\r" in r.getMessage() for r in caplog.records)
    assert len(summary_lines([r.getMessage() for r in caplog.records])) == 1


def test_json_error_lines_name_their_settings_as_a_field() -> None:
    """A log shipper finds which settings an error is about without parsing the message."""
    result = run_tool(
        ["trigger"], {"REPOSITORY_URL": "https://example.com/r.git", "PONOS_TASK": "42", "LOG_FORMAT": "json"}
    )
    assert result.code == 2, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    error = next(line for line in lines if line["level"] == "error")
    assert set(error["setting"]) == {
        "PONOS_TASK",
        "PONOS_PROCESS",
        "ARKINDEX_API_URL",
        "ARKINDEX_TASK_TOKEN",
        "ARKINDEX_API_TOKEN",
    }
    assert error["message"].startswith("4 settings are missing or invalid: PONOS_TASK: is not a valid UUID")
