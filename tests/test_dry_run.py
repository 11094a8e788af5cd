"""The dry run shows what each planned revision would import: its workers, and every file its task would
refuse, found by the revision task's own rules, from the fewest requests (issue: the dry run does not
show what would be imported). The tool runs as a child process against real repositories served over
`git http-backend`; the listing and the validation are also checked in-process against the revision
task's way of reading one commit."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from git_import import preview as preview_module
from git_import.early import SHALLOW_DEPTH
from git_import.git.repo import GitEnv, Repo
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.preview import CONFIGURATION_PATHS, preview_of, preview_revisions
from git_import.rules import selection as sel
from git_import.rules.configuration import MAX_FILE_SIZE, configuration_format, read_configuration
from git_import.rules.listing import listing_key, replay
from git_import.rules.plan import Preview

from conftest import Ponos, Result, clean_env, run_tool

IMAGE = "registry.example.com/git-import:1.0"
DRY_RUN_LINE = f"dry run: nothing was created; the tasks would run {IMAGE}"
BAD_YAML = "slug: bye\ndisplay_name: [unclosed\n"


@pytest.fixture
def served(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer) -> Callable[[], str]:
    """Publish `repo` as workers.git and return its URL (publish again after new commits)."""

    def publish() -> str:
        repo.publish(git_root / "workers.git")
        return git_server.url("workers.git")

    return publish


def dry_run(env: dict[str, str], fmt: str = "json") -> Result:
    result = run_tool(
        ["trigger", "--dry-run", "--format", fmt],
        {"IMPORT_IMAGE": IMAGE, "RETRY_BASE_DELAY": "0.01", **env},
    )
    assert result.code == 0, result.output
    return result


def transfers(server: GitHTTPServer) -> int:
    """The git transfers (a clone or a fetch) the server answered: each starts with one ref listing."""
    return sum(1 for r in server.requests if r["method"] == "GET" and r["path"].endswith("/info/refs"))


def workers_of(revision: dict) -> list[tuple]:
    return [(w["slug"], w["file"], w["valid"]) for w in revision["workers"]]


def worker_history(repo: RepoBuilder) -> tuple[str, list[str]]:
    """A base, then a push that adds a worker, changes it, adds a second, breaks it twice (invalid
    YAML, then a validator failure), fixes it, and changes nothing of the configuration."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    hello = "arkindex/hello.yml"
    pushed = [
        repo.commit("Add hello", {hello: worker_yaml("hello", "Hello")}),
        repo.commit("Describe hello", {hello: worker_yaml("hello", "Hello", "Says hello")}),
        repo.commit("Add bye", {"arkindex/bye.yaml": worker_yaml("bye", "Bye")}),
        repo.commit("Break bye", {"arkindex/bye.yaml": BAD_YAML}),
        repo.commit("Bye without a type", {"arkindex/bye.yaml": worker_yaml("bye", "Bye", type="")}),
        repo.commit("Fix bye", {"arkindex/bye.yaml": worker_yaml("bye", "Bye")}),
        repo.commit("Docs", {"README.md": "# Workers, documented\n"}),
    ]
    return base, pushed


# --- what the dry run shows ---------------------------------------------------------------------------


@pytest.mark.parametrize("deep", [False, True], ids=["short history", "history deeper than the clone"])
def test_dry_run_shows_each_revisions_workers_and_refused_files(
    repo: RepoBuilder, served: Callable[[], str], git_server: GitHTTPServer, deep: bool
) -> None:
    if deep:  # the first clone holds the ref's last SHALLOW_DEPTH commits: the files come from it
        repo.commits(SHALLOW_DEPTH + 100)
    base, pushed = worker_history(repo)
    env = {"REPOSITORY_URL": served(), "REPOSITORY_BEFORE": base}

    git_server.reset_counters()
    result = dry_run(env)
    plan = json.loads(result.stdout)
    assert transfers(git_server) == 3  # the clone, the range's trees, the configuration files
    assert "cloning " in result.stderr
    assert "cloning the whole history" not in result.stderr
    assert (plan["dry_run"], plan["image"]) == (True, IMAGE)
    revisions = plan["revisions"]
    assert [r["hash"] for r in revisions] == pushed
    assert {r["configuration"] for r in revisions} == {"current"}
    hello = ("hello", "arkindex/hello.yml", True)
    bye, bad_bye = ("bye", "arkindex/bye.yaml", True), (None, "arkindex/bye.yaml", False)
    assert [workers_of(r) for r in revisions] == [
        [hello],
        [hello],
        [bye, hello],
        [bad_bye, hello],
        [bad_bye, hello],
        [bye, hello],
        [bye, hello],
    ]
    broken, no_type = revisions[3]["workers"][0]["error"], revisions[4]["workers"][0]["error"]
    assert broken.startswith("invalid YAML at line 3")
    assert no_type.startswith("the worker configuration is invalid: type:")
    assert all(w["error"] is None for r in revisions for w in r["workers"] if w["valid"])

    text = dry_run(env, fmt="text")
    lines = text.stdout.splitlines()
    assert lines[0] == DRY_RUN_LINE
    assert text.stderr.splitlines()[0].endswith(DRY_RUN_LINE)
    rows = [line for line in lines if "  import-" in line]
    cells = {row[:10]: re.split(" {2,}", row) for row in rows}
    assert list(cells) == [c[:10] for c in pushed]
    assert "hello" in cells[pushed[0][:10]]
    assert "bye, hello" in cells[pushed[2][:10]]
    assert "2 (1 invalid)" in cells[pushed[3][:10]]
    assert f"{pushed[3][:10]} arkindex/bye.yaml: {broken}" in lines
    assert f"{pushed[4][:10]} arkindex/bye.yaml: {no_type}" in lines
    assert "2 invalid file(s) in 2 revision(s): their tasks would register nothing" in text.stdout


def test_dry_run_of_a_repository_without_configuration(
    repo: RepoBuilder, served: Callable[[], str], git_server: GitHTTPServer
) -> None:
    """The issue's case: every planned task would register nothing, and the dry run says so."""
    base = repo.commit("Initial commit", {"README.md": "# Not workers\n"})
    pushed = [repo.commit(f"Code {i}", {"src/main.py": f"print({i})\n"}) for i in range(3)]
    env = {"REPOSITORY_URL": served(), "REPOSITORY_BEFORE": base}

    git_server.reset_counters()
    plan = json.loads(dry_run(env).stdout)
    assert transfers(git_server) == 2  # no configuration file: nothing to fetch beyond the trees
    assert [(r["hash"], r["configuration"], r["workers"]) for r in plan["revisions"]] == [
        (commit, "none", []) for commit in pushed
    ]

    rows = [line for line in dry_run(env, fmt="text").stdout.splitlines() if "  import-" in line]
    assert len(rows) == 3
    assert all(row.split()[-3] == "none" for row in rows), rows


def test_dry_run_requests_stay_constant_as_the_push_grows(
    repo: RepoBuilder, served: Callable[[], str], git_server: GitHTTPServer
) -> None:
    base, pushed = worker_history(repo)
    more = [
        repo.commit(f"Change {i}", {"arkindex/hello.yml": worker_yaml("hello", "Hello", f"Version {i}")})
        for i in range(25)
    ]
    url = served()
    counts = []
    for after in (pushed[0], more[-1]):
        git_server.reset_counters()
        plan = json.loads(
            dry_run({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "REPOSITORY_AFTER": after}).stdout
        )
        counts.append((transfers(git_server), len(git_server.requests)))
        assert plan["revisions"][-1]["hash"] == after
    assert len(plan["revisions"]) == len(pushed) + len(more)
    assert counts[0] == counts[1]
    assert counts[0][0] == 3


def test_a_real_trigger_reads_no_configuration(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str], git_server: GitHTTPServer
) -> None:
    """Only the dry run pays for reading the files: a real trigger fetches the commits alone, and its
    plan file keeps its shape."""
    base, pushed = worker_history(repo)
    url = served()
    git_server.reset_counters()
    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base})
    assert result.code == 0, result.output
    assert transfers(git_server) == 1
    assert "preview" not in result.stderr and "dry run" not in result.stderr
    plan = ponos.plan()
    assert [r["hash"] for r in plan["revisions"]] == pushed
    assert "dry_run" not in plan and all("workers" not in r for r in plan["revisions"])


def test_dry_run_of_a_new_branch_reads_the_target(
    repo: RepoBuilder, served: Callable[[], str], git_server: GitHTTPServer
) -> None:
    repo.commit("Initial commit", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    target = repo.commit("Add bye", {"arkindex/bye.yml": worker_yaml("bye", "Bye")})

    git_server.reset_counters()
    plan = json.loads(dry_run({"REPOSITORY_URL": served()}).stdout)
    assert transfers(git_server) == 3
    (revision,) = plan["revisions"]
    assert revision["hash"] == target
    assert workers_of(revision) == [("bye", "arkindex/bye.yml", True), ("hello", "arkindex/hello.yml", True)]


def test_dry_run_with_a_path_filter_fetches_the_trees_once(
    repo: RepoBuilder, served: Callable[[], str], git_server: GitHTTPServer
) -> None:
    base, pushed = worker_history(repo)
    env = {"REPOSITORY_URL": served(), "REPOSITORY_BEFORE": base, "REPOSITORY_PATHS": "arkindex"}

    git_server.reset_counters()
    plan = json.loads(dry_run(env).stdout)
    assert transfers(git_server) == 3  # the selection's tree fetch serves the dry run too
    assert [r["hash"] for r in plan["revisions"]] == pushed[:-1]  # "Docs" changes no worker
    assert [len(r["workers"]) for r in plan["revisions"]] == [1, 1, 2, 2, 2, 2]


def test_dry_run_of_legacy_revisions(
    repo: RepoBuilder, served: Callable[[], str], git_server: GitHTTPServer
) -> None:
    """The legacy format reads the files its patterns and descriptions name: one more request a round,
    for every legacy revision at once."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    legacy = "version: 2\nworkers:\n  - slug: inline\n    name: Inline\n    type: classifier\n"
    legacy += "    description: docs/inline.md\n  - workers/*.yml\n"
    globbed = "slug: globbed\nname: Globbed\ntype: recognizer\ndescription: docs/globbed.md\n"
    [
        repo.commit(
            "Legacy configuration",
            {".arkindex.yml": legacy, "docs/inline.md": "Inline.\n", "workers/globbed.yml": globbed},
        ),
        repo.commit("Describe globbed", {"docs/globbed.md": "Found by a pattern.\n"}),
        repo.commit("Break the pattern's file", {"workers/globbed.yml": "slug: [\n"}),
    ]
    env = {"REPOSITORY_URL": served(), "REPOSITORY_BEFORE": base}

    git_server.reset_counters()
    revisions = json.loads(dry_run(env).stdout)["revisions"]
    # The clone, the trees, then the legacy file, the files it names, the descriptions those name.
    assert transfers(git_server) == 5
    assert [r["configuration"] for r in revisions] == ["legacy"] * 3
    inline = ("inline", ".arkindex.yml (inline)", True)
    assert [workers_of(r) for r in revisions[:2]] == [
        [inline, ("globbed", "workers/globbed.yml (via .arkindex.yml)", True)]
    ] * 2
    assert workers_of(revisions[2]) == [inline, (None, "workers/globbed.yml", False)]


def test_dry_run_table_fits_an_80_column_terminal(repo: RepoBuilder, served: Callable[[], str]) -> None:
    """On a terminal the table fits its width: columns shrink, the WORKERS cell shortens to a count,
    and the refused files' lines wrap."""
    base, pushed = worker_history(repo)
    long = "A summary long enough to be cut by any terminal of eighty columns, and then some more"
    pushed.append(repo.commit(long, {"arkindex/bye.yaml": BAD_YAML}))
    env = {
        **clean_env(),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "80",
        "REPOSITORY_URL": served(),
        "REPOSITORY_BEFORE": base,
        "IMPORT_IMAGE": IMAGE,
    }
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "git_import", "trigger", "--dry-run"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    lines = b"".join(chunks).decode().splitlines()
    assert f"{lines[0]} {lines[1].strip()}" == DRY_RUN_LINE  # wrapped, as every line of prose
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    rows = {line[:10]: line for line in lines if "  import-" in line}
    assert list(rows) == [c[:10] for c in pushed]
    assert "bye, hello" in rows[pushed[2][:10]]
    assert "1 invalid" in rows[pushed[3][:10]]
    assert any(line.startswith(f"{pushed[-1][:10]} arkindex/bye.yaml: invalid YAML") for line in lines)


# --- the same listing and validation as the revision task -------------------------------------------


def tricky_history(repo: RepoBuilder) -> str:
    """After a base, the shapes a listing must get right: a nested file (not listed), a link, a folder
    and a submodule named like worker files, a merge bringing a worker from a side branch, arkindex/
    turned into a file and a `.arkindex.yml` folder, then back; commits that change no configuration
    between them. Returns the base."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.commit(
        "Add workers",
        {
            "arkindex/a.yml": worker_yaml("a", "A"),
            "arkindex/deep/x.yml": worker_yaml("x", "X"),
            ".arkindex.yml": "version: 2\nworkers: []\n",
        },
    )
    repo.commit("Docs", {"README.md": "# Workers, documented\n"})
    repo.commit("Link", symlinks={"arkindex/link.yml": "a.yml"})
    repo.commit("Folder", {"arkindex/dir.yml/inner.txt": "not a worker\n"})
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{base},arkindex/sub.yml")
    repo.commit("Submodule")
    repo.git("checkout", "--quiet", "-b", "side")
    repo.commit("Side worker", {"arkindex/side.yml": worker_yaml("side", "Side")})
    repo.git("checkout", "--quiet", "main")
    repo.commit("Main moves on", {"README.md": "# Workers, again\n"})
    repo.git("merge", "--quiet", "--no-ff", "-m", "Merge side", "side")
    repo.git("rm", "-r", "--quiet", "--", "arkindex", ".arkindex.yml")
    shutil.rmtree(repo.path / "arkindex", ignore_errors=True)
    repo.commit("Flatten", {"arkindex": "a file\n", ".arkindex.yml/notes.txt": "a folder\n"})
    repo.commit("More docs", {"README.md": "# Workers, once more\n"})
    repo.git("rm", "--quiet", "--", "arkindex")
    repo.commit("Back", {"arkindex/b.yaml": worker_yaml("b", "B"), "arkindex/c.yml": "slug: [\n"})
    return base


def first_parent(bare: Path, base: str) -> list[str]:
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "rev-list", "--first-parent", "--reverse", "main", f"^{base}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def test_listing_replayed_from_the_log_is_the_revision_tasks_listing(
    repo: RepoBuilder, tmp_path: Path
) -> None:
    base = tricky_history(repo)
    bare = repo.publish(tmp_path / "r.git")
    pushed = first_parent(bare, base)
    with GitEnv(allow_local=True) as env:
        local = Repo(bare, env)
        changes = local.first_parent_changes("main", base, CONFIGURATION_PATHS)
        replayed = replay(local.ls_tree(base, *CONFIGURATION_PATHS), changes, pushed, set(pushed))
        listed = {commit: listing_key(local.ls_tree(commit, *CONFIGURATION_PATHS)) for commit in pushed}
    assert replayed == listed
    kinds = {entry[1] for listing in listed.values() for entry in listing}
    assert kinds == {"blob", "tree", "commit"}
    assert len(set(listed.values())) < len(pushed)  # some commits change no configuration


def test_dry_run_reads_each_revision_as_its_task_would(
    repo: RepoBuilder,
    git_root: Path,
    git_server: GitHTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each revision's preview, from the partial clone, is what `read_configuration` finds in that very
    commit; revisions with the same entries are validated once."""
    base = tricky_history(repo)
    bare = repo.publish(git_root / "workers.git")
    pushed = first_parent(bare, base)
    validated: list[tuple] = []
    real = preview_module.read_configuration

    def counting(entries, all_files, read):
        validated.append(tuple(entries))
        return real(entries, all_files, read)

    monkeypatch.setattr(preview_module, "read_configuration", counting)
    settings = SimpleNamespace(before=base, retry_attempts=2, retry_base_delay=0.01)
    with GitEnv(allow_local=True) as env:
        clone = Repo.clone(tmp_path / "clone.git", git_server.url("workers.git"), env, filter="tree:0")
        selection = sel.select_push(clone.first_parent_log(pushed[-1], exclude=base), 100)
        previews = preview_revisions(settings, clone, pushed[-1], selection, trees_fetched=False)  # type: ignore[arg-type]

        local = Repo(bare, env)

        def task_reads(commit: str) -> Preview:
            def read(oids: list[str]) -> dict:
                return dict(local.read_blobs(list(dict.fromkeys(oids)), max_size=MAX_FILE_SIZE))

            entries = local.ls_tree(commit, *CONFIGURATION_PATHS)
            return preview_of(
                read_configuration(entries, lambda: local.ls_tree(commit, ".", recursive=True), read)
            )

        expected = {commit: task_reads(commit) for commit in pushed}
    assert previews == expected
    # The current format is validated once per listing; the legacy one once per root tree (its
    # patterns may name any file of the commit).
    current = [entries for entries in validated if configuration_format(entries) == "current"]
    assert len(current) == len(set(current)) < len(validated) < len(pushed)
    assert {p.configuration for p in previews.values()} == {"current", "legacy"}
    assert any(p.invalid for p in previews.values())
