"""`arkindex-git-import demo`: the README's first command, run as a user would (no setting at all)."""

from __future__ import annotations

import re
from pathlib import Path

from git_import.local.sample import RepoBuilder, worker_yaml

from conftest import run_tool


def summary(output: str) -> str:
    assert "Summary" in output, output
    return output[output.index("Summary") :]


def test_demo_runs_the_whole_chain():
    result = run_tool(["demo"], {})

    assert result.code == 0, result.output
    text = summary(result.stdout)
    assert "Tasks created by the trigger: 3" in text
    assert "Workers registered: 2" in text
    assert "Worker versions: 4" in text
    assert len(re.findall(r"task import-\S+  completed", text)) == 3
    # Revisions run oldest first, so the worker ends with its newest description.
    assert "hello (classifier): Hello — Says hello to every page" in text
    assert "goodbye (recognizer): Goodbye — Says goodbye" in text
    assert text.index("Add the hello worker") < text.index("Describe the hello worker better")


def test_demo_on_a_local_repository(tmp_path: Path):
    repo = RepoBuilder(tmp_path / "work")
    repo.commit("Initial commit", {"README.md": "# Mine\n"})
    repo.commit("Add ocr", {"arkindex/ocr.yml": worker_yaml("ocr", "OCR", "Reads text", type="recognizer")})
    repo.commit("Add layout", {"arkindex/layout.yml": worker_yaml("layout", "Layout", "Finds lines")})

    result = run_tool(["demo", "--repository-url", str(repo.path), "--revisions", "2"], {})

    assert result.code == 0, result.output
    text = summary(result.stdout)
    assert "Tasks created by the trigger: 2" in text
    assert "Workers registered: 2" in text
    assert "ocr (recognizer): OCR — Reads text" in text
    assert "layout (classifier): Layout — Finds lines" in text
    assert "Worker versions: 3" in text  # ocr twice, layout once


def test_demo_refuses_zero_revisions(tmp_path: Path):
    result = run_tool(["demo", "--repository-url", str(tmp_path), "--revisions", "0"], {})
    assert result.code == 2
    assert "--revisions" in result.stderr
