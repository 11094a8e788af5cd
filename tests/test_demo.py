"""`arkindex-git-import demo`: the README's first command, run as a user would (no setting at all)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from git_import.local.demo import _first_line, _import_start
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.rules.plan import clip

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


LONG_SUMMARY = "Add the layout worker, which finds the lines of every page before anything reads them"
MARKDOWN = "# Reads text\n\nIt finds the lines of a page, then reads them.\n\n- fast\n- accurate\n"


def four_commits(repo: RepoBuilder) -> list[str]:
    """A history of four commits, the first already declaring a worker (its import registers a version)."""
    ocr = worker_yaml("ocr", "OCR", "Reads text", type="recognizer")
    # The same worker, its description now a Markdown block of several lines.
    block = "".join(f"  {line}\n" if line else "\n" for line in MARKDOWN.splitlines())
    markdown = ocr.replace("description: Reads text\n", f"description: |\n{block}")
    return [
        repo.commit("Initial commit", {"arkindex/ocr.yml": ocr}),
        repo.commit("Describe the OCR worker in Markdown", {"arkindex/ocr.yml": markdown}),
        repo.commit(LONG_SUMMARY, {"arkindex/layout.yml": worker_yaml("layout", "Layout", "Finds lines")}),
        repo.commit("Say what the repository holds", {"README.md": "# OCR and layout\n"}),
    ]


@pytest.mark.parametrize("revisions", [4, 5])
def test_demo_imports_the_whole_history_when_asked_for_as_much_or_more(
    revisions: int, tmp_path: Path, git_root: Path, git_server: GitHTTPServer
):
    repo = RepoBuilder(tmp_path / "work")
    commits = four_commits(repo)
    # One over smart HTTP (the first commit is fetched by its hash), one from a path on this machine.
    url = git_server.url("workers.git") if revisions == 5 else str(repo.path)
    if revisions == 5:
        repo.publish(git_root / "workers.git")

    result = run_tool(["demo", "--repository-url", url, "--revisions", str(revisions)], {})

    assert result.code == 0, result.output
    asked = "5 revisions asked, the history holds 4: importing all 4"
    assert (asked in result.stdout) == (revisions == 5), result.stdout
    text = summary(result.stdout)
    assert "Tasks created by the 2 triggers: 4 (one per revision)" in text
    rows = re.findall(r"^  ([0-9a-f]{10})  .*  task import-\S+  completed$", text, re.MULTILINE)
    assert rows == [c[:10] for c in commits]  # the first commit too, oldest first
    assert f"commit {commits[0][:10]}" in text  # its import registered the OCR worker
    assert "Worker versions: 6" in text  # ocr four times, layout twice


def test_demo_summary_shows_a_description_s_first_line_and_cut_summaries_end_with_an_ellipsis(
    tmp_path: Path,
):
    repo = RepoBuilder(tmp_path / "work")
    four_commits(repo)

    result = run_tool(["demo", "--repository-url", str(repo.path), "--revisions", "3"], {})

    assert result.code == 0, result.output
    text = summary(result.stdout)
    assert "ocr (recognizer): OCR — Reads text …" in text
    assert "finds the lines of a page" not in text and "accurate" not in text
    assert LONG_SUMMARY not in text
    row = next(line for line in text.splitlines() if LONG_SUMMARY[:20] in line)
    assert f"  {clip(LONG_SUMMARY, 40)}  task import-" in row
    assert clip(LONG_SUMMARY, 40).endswith("…") and len(clip(LONG_SUMMARY, 40)) == 40


def test_demo_on_a_single_commit_imports_it(tmp_path: Path):
    repo = RepoBuilder(tmp_path / "work")
    root = repo.commit("Initial commit", {"arkindex/ocr.yml": worker_yaml("ocr", "OCR", "Reads text")})

    result = run_tool(["demo", "--repository-url", str(repo.path), "--revisions", "2"], {})

    assert result.code == 0, result.output
    assert "2 revisions asked, the history holds 1: importing all 1" in result.stdout
    text = summary(result.stdout)
    assert "Tasks created by the trigger: 1" in text
    assert f"  {root[:10]}  Initial commit" in text
    assert "Worker versions: 1" in text


def c(n: int) -> str:
    return f"{n:040x}"


@pytest.mark.parametrize(
    ("newest_first", "revisions", "start"),
    [
        ([c(5), c(4), c(3), c(2)], 3, (c(2), None)),  # a push after c2: c3, c4, c5
        ([c(3), c(2), c(1)], 3, (c(1), c(1))),  # the whole history: c1 as a new branch, then c2, c3
        ([c(2), c(1)], 5, (c(1), c(1))),
        ([c(1)], 3, (None, None)),  # the root is the tip: a new branch imports it
        ([c(2), c(1)], 1, (c(1), None)),
    ],
)
def test_where_the_import_starts(newest_first: list[str], revisions: int, start: tuple) -> None:
    assert _import_start(newest_first, revisions) == start


@pytest.mark.parametrize(
    ("description", "line"),
    [
        ("Says hello", "Says hello"),
        (MARKDOWN, "Reads text …"),
        ("\n\n  Says hello\n", "Says hello"),
        ("", ""),
        ("x" * 80, "x" * 59 + "…"),
    ],
)
def test_a_description_s_first_line(description: str, line: str) -> None:
    assert _first_line(description) == line
