"""Fast pure unit tests: the selection rules, the plan, and the slug and URL rules (no git, no HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from git_import.errors import ConfigError
from git_import.rules.commit import Commit, parse_log_record
from git_import.rules.plan import CREATED, EXISTING, FAILED, NEW, Preview, WorkerPreview, build_plan, clip
from git_import.rules.selection import NEW_BRANCH, PUSH, REWRITTEN, Selection, select_push, select_target
from git_import.rules.urls import (
    branch_and_tag,
    check_pathspecs,
    check_ref,
    check_repository_url,
    is_full_hash,
    revision_url,
    task_slug,
    web_url,
)


def commit(n: int, summary: str | None = None) -> Commit:
    return Commit(
        hash=f"{n:040x}",
        author="Ada Worker",
        date=f"2026-01-01T00:00:{n:02d}+00:00",
        summary=summary or f"Change {n}",
    )


# --- purity ----------------------------------------------------------------------------------------------


def test_pure_rules_import_nothing_that_runs_a_process() -> None:
    # A fresh interpreter: this one already holds subprocess and the git layer, imported by other tests.
    code = (
        "import sys\n"
        "import git_import.rules.plan, git_import.rules.selection, git_import.rules.urls\n"
        "import git_import.rules.listing\n"
        "print(' '.join(sorted(m for m in sys.modules if m in ('subprocess', 'socket') "
        "or m == 'git_import.git' or m.startswith('git_import.git.'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == []


def test_log_record_parsing() -> None:
    record = (
        b"\n"
        + "\x1f".join([commit(1).hash, "Ada Worker", "2026-01-01T00:00:01+00:00", "Fix a\x1fb"]).encode()
    )
    assert parse_log_record(record) == Commit(
        commit(1).hash, "Ada Worker", "2026-01-01T00:00:01+00:00", "Fix a\x1fb"
    )
    assert parse_log_record(b"\n") is None


# --- selection ---------------------------------------------------------------------------------------


def test_push_range_is_returned_oldest_first() -> None:
    newest_first = [commit(3), commit(2), commit(1)]
    selection = select_push(newest_first, max_revisions=50)
    assert selection.mode == PUSH
    assert [c.hash for c in selection.chosen] == [commit(1).hash, commit(2).hash, commit(3).hash]
    assert selection.left_out == []
    assert selection.warnings == []


def test_cap_keeps_the_newest_and_lists_the_rest_oldest_first() -> None:
    newest_first = [commit(n) for n in range(5, 0, -1)]
    selection = select_push(newest_first, max_revisions=2)
    assert selection.chosen == [commit(4), commit(5)]
    assert selection.left_out == [commit(1), commit(2), commit(3)]


@pytest.mark.parametrize("cap", [3, 4])
def test_cap_at_or_above_the_range_leaves_nothing_out(cap: int) -> None:
    selection = select_push([commit(3), commit(2), commit(1)], max_revisions=cap)
    assert len(selection.chosen) == 3
    assert selection.left_out == []


def test_empty_push_chooses_nothing() -> None:
    selection = select_push([], max_revisions=50)
    assert selection.chosen == [] and selection.left_out == []


def test_target_alone() -> None:
    assert select_target(commit(7), NEW_BRANCH) == Selection(mode=NEW_BRANCH, chosen=[commit(7)])
    rewritten = select_target(commit(7), REWRITTEN, "history rewritten")
    assert rewritten.chosen == [commit(7)]
    assert rewritten.warnings == ["history rewritten"]


# --- plan ----------------------------------------------------------------------------------------------


def plan_of(selection: Selection, existing: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return build_plan(
        repository_url="https://gitlab.example.com/team/workers.git",
        ref="refs/heads/main",
        target=selection.chosen[-1].hash if selection.chosen else commit(0).hash,
        before=commit(0).hash,
        paths=["arkindex/"],
        selection=selection,
        existing=existing or {},
    )


def test_plan_marks_existing_slugs_with_their_ids() -> None:
    selection = select_push([commit(3), commit(2), commit(1)], max_revisions=50)
    plan = plan_of(selection, {task_slug(commit(2).hash): "task-2", "import-other": "x"})
    assert [(item.slug, item.state, item.task_id) for item in plan.items] == [
        (task_slug(commit(1).hash), NEW, None),
        (task_slug(commit(2).hash), EXISTING, "task-2"),
        (task_slug(commit(3).hash), NEW, None),
    ]
    assert not plan.complete
    plan.items[0].state, plan.items[0].task_id = CREATED, "task-1"
    plan.items[2].state, plan.items[2].task_id = CREATED, "task-3"
    assert plan.complete
    plan.items[2].state = FAILED
    assert not plan.complete


def test_plan_json() -> None:
    selection = select_push([commit(n) for n in range(4, 0, -1)], max_revisions=2)
    plan = plan_of(selection, {task_slug(commit(4).hash): "task-4"})
    data = plan.to_json()
    json.dumps(data)  # serialisable as it is
    assert data["repository_url"] == "https://gitlab.example.com/team/workers.git"
    assert data["ref"] == "refs/heads/main"
    assert data["before"] == commit(0).hash
    assert data["paths"] == ["arkindex/"]
    assert data["selection"] == PUSH
    assert data["revisions"] == [
        {
            "hash": commit(3).hash,
            "summary": "Change 3",
            "author": "Ada Worker",
            "date": "2026-01-01T00:00:03+00:00",
            "task": {"slug": f"import-{commit(3).hash}", "state": NEW, "id": None, "error": None},
        },
        {
            "hash": commit(4).hash,
            "summary": "Change 4",
            "author": "Ada Worker",
            "date": "2026-01-01T00:00:04+00:00",
            "task": {"slug": f"import-{commit(4).hash}", "state": EXISTING, "id": "task-4", "error": None},
        },
    ]
    assert data["left_out"]["count"] == 2
    assert [r["hash"] for r in data["left_out"]["revisions"]] == [commit(1).hash, commit(2).hash]
    assert {r["state"] for r in data["left_out"]["revisions"]} == {"left out"}
    assert data["summary"] == {
        "planned": 2,
        "created": 0,
        "already_there": 1,
        "new": 1,
        "failed": 0,
        "left_out": 2,
    }


def test_plan_table_lists_every_revision_oldest_first() -> None:
    long_summary = "A summary line that is far too long to fit in the table column as it is"
    selection = select_push([commit(3, long_summary), commit(2), commit(1)], max_revisions=2)
    plan = plan_of(selection, {task_slug(commit(2).hash): "task-2"})
    table = plan.render_table()
    rows = [line for line in table.splitlines() if line.startswith(commit(0).hash[:8])]
    assert [row.split()[0] for row in rows] == [commit(n).hash[:10] for n in (1, 2, 3)]
    assert rows[0].endswith("left out")
    assert rows[1].endswith("already there")
    assert rows[2].endswith("new")
    assert "…" in rows[2] and long_summary not in table
    assert "1 left out" in table
    assert "paths arkindex/" in table


def test_plan_table_shows_warnings_and_a_missing_ref() -> None:
    selection = select_target(commit(5), REWRITTEN, "history rewritten: importing the target alone")
    plan = build_plan(
        repository_url="https://example.com/w.git",
        ref=None,
        target=commit(5).hash,
        before=commit(4).hash,
        paths=[],
        selection=selection,
        existing={},
    )
    table = plan.render_table()
    assert "Warning: history rewritten" in table
    assert "ref (none)" in table
    assert plan.to_json()["warnings"] == ["history rewritten: importing the target alone"]


def wide_plan(states_existing: bool = True):  # type: ignore[no-untyped-def]
    """A plan whose rows are as wide as they get: long author and summary, every state."""
    long = "Describe the hello worker better, with a summary line far longer than any column"
    commits = [
        Commit(commit(n).hash, "Ada Lovelace, Worker of Many Names", commit(n).date, long) for n in (3, 2, 1)
    ]
    existing = {task_slug(commits[1].hash): "task-2"} if states_existing else {}
    return plan_of(select_push(commits, max_revisions=2 if states_existing else 50), existing)


def table_rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith(commit(0).hash[:8])]


def test_plan_table_without_a_width_is_not_cut_to_fit() -> None:
    plan = wide_plan()
    assert plan.render_table(None) == plan.render_table()
    assert max(len(line) for line in plan.render_table().splitlines()) > 150


@pytest.mark.parametrize("width", [200, 159, 120, 100, 90, 80, 76])
def test_plan_table_fits_the_terminal(width: int) -> None:
    plan = wide_plan()
    table = plan.render_table(width)
    assert all(len(line) <= width for line in table.splitlines()), table
    rows = table_rows(table)
    expected = [(commit(1), "left out"), (commit(2), "already there"), (commit(3), "new")]
    assert len(rows) == len(expected)
    for row, (c, state) in zip(rows, expected, strict=True):
        # Never cut: the commit, the whole slug, the state.
        assert row.split()[0] == c.hash[:10]
        assert f"  {task_slug(c.hash)}  " in row
        assert row.endswith(f"  {state}")


def test_plan_table_shrinks_the_summary_then_the_author_and_marks_each_cut() -> None:
    plan = wide_plan()
    header = plan.render_table(159).splitlines()[3]
    assert header.split() == ["COMMIT", "DATE", "AUTHOR", "SUMMARY", "TASK", "SLUG", "STATE"]
    # The summary gives way first, to 24 characters; the author stays whole (up to its usual 20).
    row = table_rows(plan.render_table(160 - 26))[0]
    assert "  Ada Lovelace, Worke…  Describe the hello work…  " in row
    # Then the author, to 8; then the summary again.
    row = table_rows(plan.render_table(120))[0]
    assert "  Ada Lov…  Describe the hello wo…  " in row
    # Narrower, the date goes, then the author; the summary stays as long as 12 characters fit.
    assert "AUTHOR" not in plan.render_table(90) and "DATE" not in plan.render_table(90)
    assert "SUMMARY" in plan.render_table(90)
    assert "Describe th…" in plan.render_table(88)  # commit, summary, slug, "already there", spaces
    assert "SUMMARY" not in plan.render_table(87)


def test_plan_table_of_new_revisions_keeps_a_summary_on_80_columns() -> None:
    table = wide_plan(states_existing=False).render_table(80)
    assert all(len(line) <= 80 for line in table.splitlines())
    assert all("Describe th" in row and row.endswith("new") for row in table_rows(table))


def test_plan_table_narrower_than_its_fixed_columns_cuts_none_of_them() -> None:
    rows = table_rows(wide_plan().render_table(40))
    assert [row.split() for row in rows] == [
        [c.hash[:10], task_slug(c.hash), *state.split()]
        for c, state in ((commit(1), "left out"), (commit(2), "already there"), (commit(3), "new"))
    ]


def test_plan_table_wraps_long_warnings_without_splitting_hashes() -> None:
    warning = f"REPOSITORY_BEFORE {commit(4).hash} is no longer in the repository (history rewritten by a force push?): importing the target alone"
    plan = build_plan(
        repository_url="https://example.com/w.git",
        ref=None,
        target=commit(5).hash,
        before=commit(4).hash,
        paths=[],
        selection=select_target(commit(5), REWRITTEN, warning),
        existing={},
    )
    table = plan.render_table(80)
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert commit(4).hash in table and "Warning: REPOSITORY_BEFORE" in table


def dry_run_plan():  # type: ignore[no-untyped-def]
    """The wide plan as the dry run shows it: each revision's workers, one of them with a refused file."""
    plan = wide_plan(states_existing=False)
    hello = WorkerPreview("hello", "arkindex/hello.yml")
    bad = WorkerPreview(
        None, "arkindex/bye.yml", "invalid YAML at line 3, column 1 (fix the YAML syntax there)"
    )
    many = tuple(WorkerPreview(f"worker-{n:02d}", f"arkindex/worker-{n:02d}.yml") for n in range(12))
    previews = [Preview("current", (bad, hello)), Preview("none"), Preview("legacy", many)]
    for item, preview in zip(plan.items, previews, strict=True):
        item.preview = preview
    plan.dry_run_image = "registry.example.com/git-import:1.0"
    return plan


def test_dry_run_plan_shows_the_workers_in_its_json_only() -> None:
    plan = dry_run_plan()
    data = plan.to_json()
    assert (data["dry_run"], data["image"]) == (True, "registry.example.com/git-import:1.0")
    assert data["revisions"][0]["configuration"] == "current"
    assert data["revisions"][0]["workers"] == [
        {
            "slug": None,
            "file": "arkindex/bye.yml",
            "valid": False,
            "error": plan.items[0].preview.invalid[0].error,
        },
        {"slug": "hello", "file": "arkindex/hello.yml", "valid": True, "error": None},
    ]
    assert (data["revisions"][1]["configuration"], data["revisions"][1]["workers"]) == ("none", [])
    # A real run's plan file keeps its shape.
    real = wide_plan(states_existing=False).to_json()
    assert "dry_run" not in real and "image" not in real
    assert all(set(r) == {"hash", "summary", "author", "date", "task"} for r in real["revisions"])


@pytest.mark.parametrize(
    ("width", "cells"),
    [
        (None, ("2 (1 invalid)", "none", "12 workers")),
        (140, ("2 (1 invalid)", "none", "12 workers")),
        (90, ("2 (1 invalid)", "none", "12 workers")),
        # Each cell shows the most it can: the invalid ones alone, a bare count.
        (80, ("1 invalid", "none", "12 workers")),
        (77, ("1 invalid", "none", "12")),
        (76, None),  # the commit, the slug and the state take it all: the column goes
    ],
)
def test_dry_run_table_fits_the_terminal_and_shortens_the_workers(
    width: int | None, cells: tuple[str, ...] | None
) -> None:
    table = dry_run_plan().render_table(width)
    lines = table.splitlines()
    assert lines[0].startswith("dry run: nothing was created; the tasks would run")
    assert width is None or all(len(line) <= width for line in lines), table
    header = next(line for line in lines if line.startswith("COMMIT"))
    assert ("WORKERS" in header) == (cells is not None)
    rows = [line for line in lines if "  import-" in line]
    assert len(rows) == 3
    for row, cell in zip(rows, cells or (), strict=False):
        assert f"  {cell}  " in row, table
    # Below the table, whatever the width: each refused file, with its error.
    assert any(line.startswith(f"{commit(1).hash[:10]} arkindex/bye.yml: invalid YAML") for line in lines)
    assert "1 invalid file(s) in 1 revision(s): their tasks would register nothing" in " ".join(lines)


def test_workers_cell_lists_the_slugs_while_they_are_short() -> None:
    two = Preview("current", (WorkerPreview("bye", "arkindex/bye.yml"), WorkerPreview("hello", "a/h.yml")))
    assert two.cell() == ("bye, hello", "2 workers", "2")
    assert Preview("legacy", (WorkerPreview("x", ".arkindex.yml (x)"),)).cell() == ("x", "1 worker", "1")


@pytest.mark.parametrize(
    ("text", "width", "clipped"),
    [
        ("Add the hello worker", 20, "Add the hello worker"),
        ("Add the hello worker", 8, "Add the…"),
        ("ab", 1, "…"),
        ("ab", 0, ""),
    ],
)
def test_clip_marks_a_cut_with_an_ellipsis(text: str, width: int, clipped: str) -> None:
    assert clip(text, width) == clipped
    assert len(clip(text, width)) <= width


# --- slugs and URLs --------------------------------------------------------------------------------------


def test_task_slug_is_the_full_hash() -> None:
    full = "0123456789abcdef0123456789abcdef01234567"
    assert task_slug(full) == f"import-{full}"
    assert len(task_slug(full)) <= 250
    assert is_full_hash(full)
    assert not is_full_hash(full[:10])
    assert not is_full_hash(full.upper())


@pytest.mark.parametrize(
    "url",
    [
        "https://gitlab.example.com/team/workers.git",
        "http://127.0.0.1:8080/workers.git",
        "ssh://git@gitlab.example.com/team/workers.git",
        "git@gitlab.example.com:team/workers.git",
    ],
)
def test_network_urls_are_accepted(url: str) -> None:
    assert check_repository_url(url) == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "empty"),
        ("https://oauth2:glpat-secret@gitlab.example.com/team/workers.git", "credentials"),
        ("https://glpat-secret@gitlab.example.com/team/workers.git", "credentials"),
        ("ext::sh -c id", "ext::"),
        ("fd::3", "fd::"),
        ("-uhttps://example.com/x.git", "'-'"),
        ("/srv/git/workers.git", "local"),
        ("file:///srv/git/workers.git", "local"),
        ("ftp://example.com/workers.git", "ftp"),
    ],
)
def test_unsafe_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_repository_url(url)
    assert "REPOSITORY_URL" in str(caught.value)
    assert words in str(caught.value)
    assert "glpat-secret" not in str(caught.value)


def test_local_urls_only_when_allowed() -> None:
    assert check_repository_url("/srv/git/workers.git", allow_local=True) == "/srv/git/workers.git"
    assert check_repository_url("file:///srv/git/w.git", allow_local=True) == "file:///srv/git/w.git"


@pytest.mark.parametrize(
    ("url", "web"),
    [
        ("https://gitlab.example.com/team/workers.git", "https://gitlab.example.com/team/workers"),
        ("https://gitlab.example.com/team/workers/", "https://gitlab.example.com/team/workers"),
        ("http://127.0.0.1:8080/workers.git", "http://127.0.0.1:8080/workers"),
        ("ssh://git@gitlab.example.com/team/workers.git", "https://gitlab.example.com/team/workers"),
        ("git@gitlab.example.com:team/workers.git", "https://gitlab.example.com/team/workers"),
    ],
)
def test_web_url(url: str, web: str) -> None:
    assert web_url(url) == web
    assert revision_url(url, "a" * 40) == f"{web}/commit/{'a' * 40}"


@pytest.mark.parametrize("ref", ["main", "feature/x", "refs/heads/main", "refs/tags/v1.0", "v1.0"])
def test_valid_refs(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "ref", ["", "-main", "--upload-pack=x", "main..other", "main^", "a b", "main~1", "x:y", "main.lock", "a/"]
)
def test_invalid_refs(ref: str) -> None:
    with pytest.raises(ConfigError, match="REPOSITORY_REF"):
        check_ref(ref)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("refs/heads/main", ("main", None)),
        ("refs/heads/feature/x", ("feature/x", None)),
        ("refs/tags/v1.0", (None, "v1.0")),
        ("refs/merge-requests/1/head", (None, None)),
        ("main", ("main", None)),
        (None, (None, None)),
    ],
)
def test_branch_and_tag(ref: str | None, expected: tuple[str | None, str | None]) -> None:
    assert branch_and_tag(ref) == expected


def test_pathspecs() -> None:
    assert check_pathspecs(["arkindex/", ".arkindex.yml"]) == ["arkindex/", ".arkindex.yml"]
    with pytest.raises(ConfigError, match="REPOSITORY_PATHS"):
        check_pathspecs(["--output=/tmp/x"])
