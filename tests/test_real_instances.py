"""What real Arkindex instances do that the kindest emulator does not (issue 11), each played by an
emulator mode, with the real tool run as Ponos would run it.

- worker operations that refuse a task token (Arkindex backend #1451, #1531);
- Arkindex up to 1.11.1 answering a duplicate worker version with a 400 and no `existing_id`;
- a duplicate task slug as an object-level error in the standard format, or a 409;
- tags unique per worker (backend #1775).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from git_import.local.emulator import Emulator, Faults
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml

from conftest import Documented, Result, clean_env, make_ponos, revision_env, run_tool

# Arkindex refusing a token on worker registration: the whole line, as the README's per-revision table
# shows it (`<answer>` is Arkindex's).
TASK_TOKEN_REFUSED = (
    "creating or retrieving worker <slug>: Arkindex refused ARKINDEX_TASK_TOKEN (Ponos) for CreateWorker "
    "(HTTP 403: <answer>) (set ARKINDEX_API_TOKEN in the process environment to a user token whose account "
    "has the permission to create workers and worker versions)"
)
USER_TOKEN_REFUSED = (
    "creating or retrieving worker <slug>: Arkindex refused ARKINDEX_API_TOKEN (Token) for CreateWorker "
    "(HTTP 401: <answer>) (check ARKINDEX_API_TOKEN: its account needs the permission to create workers "
    "and worker versions)"
)

# A worker's tag taken by another version (not a bad input: exit 1), as the README's per-revision section
# quotes it.
TAG_TAKEN = (
    "revision <hash>: worker <slug> (<file>): tag '<tag>' is already on another version of this worker: "
    "Arkindex keeps a tag on one version per worker (<answer>) (remove the tag from the other version on "
    "Arkindex, or move the Git tag back, then retry the task)"
)


def documented_messages() -> list[str]:
    """The token refusals the tests below check against the tool's output, as the README's per-revision
    table shows them (tests/test_readme_tables.py checks that every row of the table is one of them)."""
    return [TASK_TOKEN_REFUSED, USER_TOKEN_REFUSED]


def assert_refusal(result: Result, documented: str) -> None:
    """`result` has one ERROR line, the refusal the README documents."""
    errors = [line.split(" ERROR ", 1)[1].strip() for line in result.output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.output
    found = Documented(documented, {"<slug>": None, "<answer>": None}).match(errors[0])
    assert found is not None, f"{errors[0]!r} is not the documented {documented!r}"
    assert found["<slug>"] in {"bye", "hello"}  # the worker whose registration was refused


def served(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer, versions: int = 2) -> dict:
    """A repository whose last `versions` commits each change the `hello` worker."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    commits = [
        repo.commit(
            f"Hello, version {i}",
            {
                "arkindex/hello.yml": worker_yaml("hello", "Hello", f"Version {i}"),
                "arkindex/bye.yml": worker_yaml("bye", "Bye", "Says bye"),
            },
        )
        for i in range(versions)
    ]
    repo.publish(git_root / "workers.git")
    return {"url": git_server.url("workers.git"), "base": base, "commits": commits}


def schemes(emulator: Emulator) -> dict[str, set[str]]:
    """operationId → the auth schemes it was called with."""
    seen: dict[str, set[str]] = {}
    for request in emulator.requests:
        seen.setdefault(request["operation"], set()).add(request["auth_scheme"])
    return seen


def test_worker_operations_use_the_user_token_while_the_trigger_keeps_the_task_token(
    emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    emulator.modes.task_token_on_workers = False
    pushed = served(repo, git_root, git_server)
    user_token = emulator.create_user_token()
    ponos = make_ponos(
        emulator,
        tmp_path / "data",
        {
            "REPOSITORY_URL": pushed["url"],
            "REPOSITORY_REF": "refs/heads/main",
            "ARKINDEX_API_TOKEN": user_token,
        },
    )

    trigger = ponos.run_trigger({"REPOSITORY_BEFORE": pushed["base"]})
    assert trigger.code == 0, trigger.output
    children = ponos.children()
    assert len(children) == 2
    results = [ponos.run_child(task) for task in children]

    for result in results:
        assert result.code == 0, result.output
        assert "worker operations use ARKINDEX_API_TOKEN (Token)" in result.output
        assert user_token not in result.output
    assert "RetrieveProcess and CreateTask use ARKINDEX_TASK_TOKEN (Ponos)" in trigger.output
    used = schemes(emulator)
    assert used["RetrieveProcess"] == used["CreateTask"] == {"Ponos"}
    for operation in ("CreateWorker", "ImportWorkerVersion"):
        assert used[operation] == {"Token"}, operation
    assert sorted(w["slug"] for w in emulator.workers()) == ["bye", "hello"]
    assert len(emulator.versions()) == 4


def test_task_token_refused_on_worker_operations_stops_with_exit_2(
    emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    emulator.modes.task_token_on_workers = False
    pushed = served(repo, git_root, git_server)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    commit = pushed["commits"][-1]

    result = run_tool(["revision", commit], revision_env(ponos, pushed["url"], commit))

    assert result.code == 2, result.output
    assert_refusal(result, TASK_TOKEN_REFUSED)
    assert "Traceback" not in result.output
    assert emulator.workers() == [] and emulator.versions() == []


def test_refused_user_token_says_to_check_its_permissions(
    emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    pushed = served(repo, git_root, git_server)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    commit = pushed["commits"][-1]
    env = revision_env(ponos, pushed["url"], commit, ARKINDEX_API_TOKEN="not-a-token-of-this-instance")

    result = run_tool(["revision", commit], env)

    assert result.code == 2, result.output
    assert_refusal(result, USER_TOKEN_REFUSED)
    assert "not-a-token-of-this-instance" not in result.output
    assert emulator.workers() == []


def test_auth_scheme_override_applies_to_the_user_token(
    emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    """ARKINDEX_API_AUTH_SCHEME is honoured as arkindex-client's options_from_env does: a user token
    sent with another scheme is refused by the emulator, which knows only Ponos and Token."""
    pushed = served(repo, git_root, git_server)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    commit = pushed["commits"][-1]
    env = revision_env(
        ponos,
        pushed["url"],
        commit,
        ARKINDEX_API_TOKEN=emulator.create_user_token(),
        ARKINDEX_API_AUTH_SCHEME="Bearer",
    )

    result = run_tool(["revision", commit], env)

    assert result.code == 2, result.output
    assert "worker operations use ARKINDEX_API_TOKEN (Bearer)" in result.output


def test_old_instance_duplicate_version_is_found_among_many_pages(
    emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    """Arkindex up to 1.11.1: a second import of a revision is a 400 naming no version; the version is
    found through ListWorkerVersions, whatever page it is on, and nothing new is created."""
    emulator.modes.version_duplicate = "400"
    emulator.modes.page_size = 2
    pushed = served(repo, git_root, git_server, versions=5)
    ponos = make_ponos(emulator, tmp_path / "data", {})
    for commit in pushed["commits"]:
        first = run_tool(["revision", commit], revision_env(ponos, pushed["url"], commit))
        assert first.code == 0, first.output
    versions_before = len(emulator.versions())
    assert versions_before == 10
    oldest = pushed["commits"][0]  # newest first: the oldest version is on the last page

    again = run_tool(["revision", oldest], revision_env(ponos, pushed["url"], oldest))

    assert again.code == 0, again.output
    assert len(emulator.versions()) == versions_before
    pages = [r for r in emulator.requests if r["operation"] == "ListWorkerVersions"]
    assert len(pages) >= 3
    data = ponos.data
    reports = sorted(data.glob("*/current/import-report.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text())
    assert {w["slug"]: w["version"] for w in report["workers"]} == {"bye": "existing", "hello": "existing"}
    hello = next(v for v in emulator.versions() if v["id"] == report_version(report, "hello"))
    assert hello["revision_url"].endswith(oldest)


def report_version(report: dict, slug: str) -> str:
    return next(w["version_id"] for w in report["workers"] if w["slug"] == slug)


@pytest.mark.parametrize("form", ["field", "non_field", "object", "conflict"])
def test_duplicate_slug_in_every_form_counts_as_already_there(
    emulator: Emulator,
    tmp_path: Path,
    repo: RepoBuilder,
    git_root: Path,
    git_server: GitHTTPServer,
    form: str,
) -> None:
    """Every CreateTask finds its slug taken by another trigger: whatever form the refusal takes, the
    trigger counts each task as already there, fails none, and never creates a second one."""
    emulator.modes.duplicate_slug = form
    emulator.faults = Faults(duplicate_race_rate=1.0, seed=1)
    pushed = served(repo, git_root, git_server, versions=3)
    ponos = make_ponos(emulator, tmp_path / "data", {"REPOSITORY_URL": pushed["url"]})

    result = ponos.run_trigger({"REPOSITORY_BEFORE": pushed["base"]})

    assert result.code == 0, result.output
    # Recognised as "already there" from the answer itself, not found failed then settled by asking
    # the process.
    assert " ERROR " not in result.output and "exists after all" not in result.output, result.output
    summary = ponos.plan()["summary"]
    assert summary["already_there"] == 3 and summary["failed"] == 0 and summary["created"] == 0
    slugs = [task["slug"] for task in ponos.children()]
    assert sorted(slugs) == sorted(f"import-{c}" for c in pushed["commits"])
    ids = {t["slug"]: t["id"] for t in ponos.children()}
    assert {r["task"]["slug"]: r["task"]["id"] for r in ponos.plan()["revisions"]} == ids


def test_two_triggers_racing_with_object_level_duplicates_create_one_task_per_slug(
    emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    emulator.modes.duplicate_slug = "object"
    emulator.faults.create_task_delay = 0.05
    pushed = served(repo, git_root, git_server, versions=8)
    ponos = make_ponos(emulator, tmp_path / "data", {"REPOSITORY_URL": pushed["url"]})
    env = {**clean_env(), "PYTHONUNBUFFERED": "1", **ponos.env, "REPOSITORY_BEFORE": pushed["base"]}

    procs = []
    for name in ("a", "b"):
        with (tmp_path / f"{name}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "git_import", "trigger"],
                    env={**env, "PONOS_DATA": str(tmp_path / name), "FAN_OUT_CONCURRENCY": "2"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    codes = [proc.wait(60) for proc in procs]

    logs = [(tmp_path / f"{name}.log").read_text() for name in ("a", "b")]
    assert codes == [0, 0], logs
    assert all(" ERROR " not in log and "exists after all" not in log for log in logs), logs
    slugs = [task["slug"] for task in ponos.children()]
    assert sorted(slugs) == sorted(f"import-{c}" for c in pushed["commits"])
    plans = [json.loads((tmp_path / name / "current" / "import-plan.json").read_text()) for name in "ab"]
    for plan in plans:
        assert plan["summary"]["created"] + plan["summary"]["already_there"] == 8
        assert plan["summary"]["failed"] == 0


def test_tag_on_another_version_fails_that_worker_only(
    emulator: Emulator, tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    """A tag moved to another commit: Arkindex keeps a tag on one version per worker. The worker whose
    tag is taken fails with a line naming the tag and the worker; the other worker is registered."""
    emulator.modes.unique_tags = True
    base = repo.commit("Initial commit", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "First")})
    moved = repo.commit(
        "Second",
        {
            "arkindex/hello.yml": worker_yaml("hello", "Hello", "Second"),
            "arkindex/bye.yml": worker_yaml("bye", "Bye", "Says bye"),
        },
    )
    repo.publish(git_root / "workers.git")
    url = git_server.url("workers.git")
    ponos = make_ponos(emulator, tmp_path / "data", {})

    def run(commit: str):
        env = revision_env(ponos, url, commit, REPOSITORY_REF="refs/tags/v1")
        env["PONOS_DATA"] = str(ponos.data / f"{commit}-{len(emulator.versions())}")
        return run_tool(["revision", commit], env)

    first = run(base)
    assert first.code == 0, first.output
    second = run(moved)

    assert second.code == 1, second.output
    assert "Traceback" not in second.output
    errors = [line.split(" ERROR ", 1)[1].strip() for line in second.output.splitlines() if " ERROR " in line]
    values = {"<hash>": moved[:10], "<slug>": "hello", "<file>": "arkindex/hello.yml", "<tag>": "v1"}
    (tag_line,) = [line for line in errors if "'v1'" in line]
    taken = Documented(TAG_TAKEN, {**values, "<answer>": None})
    assert taken.match(tag_line) is not None, f"{tag_line!r} is not the documented {TAG_TAKEN!r}"
    tagged = {v["revision_url"].rsplit("/", 1)[-1]: v["tag"] for v in emulator.versions()}
    assert tagged.get(base) == "v1"
    bye = [w for w in emulator.workers() if w["slug"] == "bye"]
    assert len(bye) == 1
    assert any(v["worker_id"] == bye[0]["id"] for v in emulator.versions())
