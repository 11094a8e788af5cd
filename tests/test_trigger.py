"""Acceptance tests of the trigger (issue 2): real git over `git http-backend`, the emulator through the
real arkindex-client, and the tool run as Ponos would run it (a child process with the Ponos environment).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from git_import.early import SHALLOW_DEPTH
from git_import.git.repo import GitEnv, Repo
from git_import.local.emulator import Emulator
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml

from conftest import REPO_TOKEN, Ponos, Result, make_ponos, run_tool

NULL_SHA = "0" * 40
IMAGE = "registry.example.com/git-import:1.0"
HEX40 = re.compile(r"^[0-9a-f]{40}$")


# --- helpers ---------------------------------------------------------------------------------------


def history(repo: RepoBuilder, count: int, start: int = 0) -> list[str]:
    """`count` commits touching a worker file, oldest first."""
    return [
        repo.commit(f"Change {i}", {"arkindex/hello.yml": worker_yaml("hello", "Hello", f"Version {i}")})
        for i in range(start, start + count)
    ]


def create_task_requests(emulator: Emulator) -> list[dict]:
    return [r for r in emulator.requests if r["operation"] == "CreateTask"]


def write_requests(emulator: Emulator) -> list[dict]:
    return [r for r in emulator.requests if r["method"] != "GET"]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line]


def assert_nothing_created(ponos: Ponos) -> None:
    assert ponos.children() == []
    assert write_requests(ponos.emulator) == []
    assert not (ponos.data / "current" / "import-plan.json").exists()


def assert_config_error(result: Result, *words: str) -> None:
    """Exit status 2, no traceback, and one error line naming the setting(s) with a fix."""
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    first = lines[0]
    for word in words:
        assert word in first, first


@pytest.fixture
def served(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer) -> Callable[[], str]:
    """Publish `repo` as workers.git and return its URL (publish again after new commits)."""
    bare = git_root / "workers.git"

    def publish() -> str:
        repo.publish(bare)
        return git_server.url("workers.git")

    return publish


# --- a push of N commits ---------------------------------------------------------------------------


def test_push_creates_one_task_per_commit_in_order(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 4)
    url = served()

    result = ponos.run_trigger(
        {
            "REPOSITORY_URL": url,
            "REPOSITORY_REF": "main",
            "REPOSITORY_BEFORE": base,
            "REPOSITORY_AFTER": pushed[-1],
            "FAN_OUT_CONCURRENCY": "1",
        }
    )
    assert result.code == 0, result.output

    # Created on the server in order, oldest first, with the exact fields.
    children = ponos.children()
    assert [t["slug"] for t in children] == [f"import-{h}" for h in pushed]
    for task, commit in zip(children, pushed, strict=True):
        assert task["process_id"] == ponos.process["id"]
        assert task["parents"] == [ponos.trigger["id"]]
        assert task["image"] == IMAGE
        assert task["command"] == f"arkindex-git-import revision {commit}"
        assert task["depth"] == 1
        assert task["env"]["REPOSITORY_REVISION"] == commit
        assert task["env"]["REPOSITORY_REF"] in ("main", "refs/heads/main")

    # What the trigger sent: process_id (never workflow_id), no secret in the task's env.
    bodies = [r["body"] for r in create_task_requests(ponos.emulator)]
    assert len(bodies) == 4
    for body, commit in zip(bodies, pushed, strict=True):
        assert body["process_id"] == ponos.process["id"]
        assert "workflow_id" not in body
        assert body["slug"] == f"import-{commit}"
        assert HEX40.match(body["slug"].removeprefix("import-"))
        assert body["parents"] == [ponos.trigger["id"]]
        assert body["env"]["REPOSITORY_REVISION"] == commit
        assert not any("TOKEN" in key for key in body["env"]), body["env"]
        assert ponos.trigger["token"] not in json.dumps(body)

    # The plan file lists them oldest first, created, with their IDs.
    plan = ponos.plan()
    assert [r["hash"] for r in plan["revisions"]] == pushed
    assert [r["task"]["state"] for r in plan["revisions"]] == ["created"] * 4
    assert [r["task"]["id"] for r in plan["revisions"]] == [t["id"] for t in children]
    assert plan["left_out"]["count"] == 0


def test_concurrent_fan_out_keeps_the_plan_in_order(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 6)
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "FAN_OUT_CONCURRENCY": "4"})
    assert result.code == 0, result.output
    plan = ponos.plan()
    assert [r["hash"] for r in plan["revisions"]] == pushed
    by_slug = {t["slug"]: t["id"] for t in ponos.children()}
    assert len(by_slug) == 6
    assert [r["task"]["id"] for r in plan["revisions"]] == [by_slug[f"import-{h}"] for h in pushed]


def test_plan_file_describes_each_revision(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    commit = repo.commit("Add the hello worker\n\nWith a body that is not the summary.", {"a.txt": "a"})
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base})
    assert result.code == 0, result.output
    plan = ponos.plan()
    assert plan["repository_url"] == url
    assert plan["target"] == commit
    assert plan["before"] == base
    (revision,) = plan["revisions"]
    task = ponos.emulator.task_by_slug(ponos.process["id"], f"import-{commit}")
    assert task is not None
    assert revision["hash"] == commit
    assert revision["summary"] == "Add the hello worker"
    assert revision["author"] == "Ada Worker"
    assert revision["date"].startswith("2026-01-01T00:00:02")
    assert revision["task"]["slug"] == f"import-{commit}"
    assert revision["task"]["state"] == "created"
    assert revision["task"]["id"] == task["id"]
    assert plan["left_out"] == {"count": 0, "revisions": []}
    assert plan["summary"]["created"] == 1


# --- a re-run ---------------------------------------------------------------------------------------


def test_rerun_creates_nothing(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 3)
    env = {"REPOSITORY_URL": served(), "REPOSITORY_BEFORE": base}

    assert ponos.run_trigger(env).code == 0
    first_ids = [r["task"]["id"] for r in ponos.plan()["revisions"]]
    tasks_before = ponos.emulator.tasks(ponos.process["id"])
    creates_before = len(create_task_requests(ponos.emulator))

    again = ponos.run_trigger(env)
    assert again.code == 0, again.output
    assert ponos.emulator.tasks(ponos.process["id"]) == tasks_before
    assert len(create_task_requests(ponos.emulator)) == creates_before
    plan = ponos.plan()
    assert [r["hash"] for r in plan["revisions"]] == pushed
    assert [r["task"]["state"] for r in plan["revisions"]] == ["already there"] * 3
    assert [r["task"]["id"] for r in plan["revisions"]] == first_ids
    assert "already" in again.output


def test_process_retried_in_a_new_run_gets_its_own_tasks(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    """Slugs are unique within a run: a trigger of a new run creates that run's tasks, under itself."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    history(repo, 2)
    env = {"REPOSITORY_URL": served(), "REPOSITORY_BEFORE": base}
    assert ponos.run_trigger(env).code == 0
    retry = ponos.emulator.create_task(ponos.process["id"], slug="import", run=1)

    result = ponos.run_trigger({**env, "PONOS_TASK": retry["id"], "ARKINDEX_TASK_TOKEN": retry["token"]})
    assert result.code == 0, result.output
    new = [t for t in ponos.emulator.tasks(ponos.process["id"]) if t["run"] == 1 and t["id"] != retry["id"]]
    assert len(new) == 2
    assert all(t["parents"] == [retry["id"]] for t in new)
    assert [r["task"]["state"] for r in ponos.plan()["revisions"]] == ["created", "created"]


def test_retried_process_creates_only_what_is_missing(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    """A process that already holds some of the tasks (a killed first run) gets the others only."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 3)
    url = served()
    existing = ponos.emulator.create_task(
        ponos.process["id"],
        slug=f"import-{pushed[1]}",
        parents=[ponos.trigger["id"]],
        command=f"arkindex-git-import revision {pushed[1]}",
        state="unscheduled",
    )

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base})
    assert result.code == 0, result.output
    assert sorted(r["body"]["slug"] for r in create_task_requests(ponos.emulator)) == sorted(
        [f"import-{pushed[0]}", f"import-{pushed[2]}"]
    )
    plan = ponos.plan()
    assert [r["task"]["state"] for r in plan["revisions"]] == ["created", "already there", "created"]
    assert plan["revisions"][1]["task"]["id"] == existing["id"]


# --- which revisions --------------------------------------------------------------------------------


@pytest.mark.parametrize("before", [None, NULL_SHA], ids=["unset", "forty-zeros"])
def test_new_branch_imports_the_tip_only(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str], before: str | None
) -> None:
    history(repo, 3)
    repo.git("checkout", "--quiet", "-b", "feature")
    tip = repo.commit("Feature work", {"feature.txt": "x"})
    repo.git("checkout", "--quiet", "main")
    env = {"REPOSITORY_URL": served(), "REPOSITORY_REF": "feature"}
    if before:
        env["REPOSITORY_BEFORE"] = before

    result = ponos.run_trigger(env)
    assert result.code == 0, result.output
    assert [t["slug"] for t in ponos.children()] == [f"import-{tip}"]
    plan = ponos.plan()
    assert [r["hash"] for r in plan["revisions"]] == [tip]
    assert plan["ref"] == "refs/heads/feature"


def test_rewritten_history_imports_the_target_with_a_warning(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str], git_root: Path
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    old = history(repo, 2)
    served()
    # A force push replaces the two commits, and the server forgets them.
    repo.git("reset", "--quiet", "--hard", base)
    new = repo.commit("Rewritten change", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "New")})
    url = served()
    bare = git_root / "workers.git"
    subprocess.run(
        "git reflog expire --expire=now --all && git gc --quiet --prune=now",
        shell=True,
        cwd=bare,
        check=True,
        capture_output=True,
    )
    gone = subprocess.run(["git", f"--git-dir={bare}", "cat-file", "-e", old[-1]], capture_output=True)
    assert gone.returncode != 0, "the old commit should be pruned from the server"

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": old[-1], "REPOSITORY_AFTER": new})
    assert result.code == 0, result.output
    assert [t["slug"] for t in ponos.children()] == [f"import-{new}"]
    warnings = [line for line in result.output.splitlines() if " WARNING " in line]
    assert any(old[-1] in line and "rewritten" in line for line in warnings), result.output
    plan = ponos.plan()
    assert [r["hash"] for r in plan["revisions"]] == [new]
    assert plan["warnings"]


def test_before_on_another_branch_is_refused(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.git("checkout", "--quiet", "-b", "other")
    elsewhere = repo.commit("On another branch", {"other.txt": "x"})
    repo.git("checkout", "--quiet", "main")
    history(repo, 2)
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": elsewhere})
    assert_config_error(result, "REPOSITORY_BEFORE", "not an ancestor")
    assert_nothing_created(ponos)


def test_path_filter_keeps_commits_whose_first_parent_change_touches_the_paths(
    ponos: Ponos, repo: RepoBuilder, served
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    worker = repo.commit("Add a worker", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.commit("Docs only", {"README.md": "# Workers, documented\n"})
    # A merge bringing a worker change: its first-parent change touches arkindex/.
    repo.git("checkout", "--quiet", "-b", "side")
    side_worker = repo.commit("Side: add a worker", {"arkindex/bye.yml": worker_yaml("bye", "Bye")})
    repo.git("checkout", "--quiet", "main")
    repo.commit("Docs again", {"docs/index.md": "x"})
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "side")
    merge_worker = repo.head()
    # A merge bringing docs only: not kept.
    repo.git("checkout", "--quiet", "-b", "side-docs")
    repo.commit("Side: docs", {"docs/more.md": "y"})
    repo.git("checkout", "--quiet", "main")
    repo.commit("Another worker change", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "v2")})
    last_worker = repo.head()
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "side-docs")
    url = served()

    result = ponos.run_trigger(
        {"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "REPOSITORY_PATHS": "arkindex/, .arkindex.yml"}
    )
    assert result.code == 0, result.output
    expected = [worker, merge_worker, last_worker]
    assert side_worker not in expected
    assert [r["hash"] for r in ponos.plan()["revisions"]] == expected
    assert sorted(t["slug"] for t in ponos.children()) == sorted(f"import-{h}" for h in expected)
    assert ponos.plan()["paths"] == ["arkindex/", ".arkindex.yml"]


def test_before_brought_in_by_a_merge_selects_the_first_parent_commits_it_lacks(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    # `before` is the old tip of a side line, merged as the second parent of the pushed merge: it is an
    # ancestor of the target without being on the target's first-parent line.
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.git("checkout", "--quiet", "-b", "side")
    before = repo.commit("Side work", {"arkindex/bye.yml": worker_yaml("bye", "Bye")})
    repo.git("checkout", "--quiet", "main")
    mainline = repo.commit("Main work", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "side")
    merge = repo.head()
    assert repo.git("rev-parse", f"{merge}^1").strip() == mainline
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": before})
    assert result.code == 0, result.output
    assert [r["hash"] for r in ponos.plan()["revisions"]] == [mainline, merge]
    assert base not in {t["slug"].removeprefix("import-") for t in ponos.children()}


def test_push_range_is_read_down_to_before_without_asking_the_server_for_it(
    repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer, tmp_path: Path
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 3)
    repo.publish(git_root / "workers.git")
    with GitEnv() as env:
        clone = Repo.clone(
            tmp_path / "c.git", git_server.url("workers.git"), env, branch="main", filter="tree:0"
        )
        assert (
            clone.has_commit(base)
            and clone.holds_ancestor(base, pushed[-1])
            and clone.holds_ancestor(pushed[-1], pushed[-1])
        )
        assert not clone.holds_ancestor(pushed[-1], base)  # a descendant is no ancestor
        assert [c.hash for c in clone.first_parent_log(pushed[-1], exclude=base)] == pushed[::-1]
        asked = len(git_server.requests)
        # A `before` the clone lacks (history rewritten): known to be missing, never fetched on demand.
        assert not clone.has_commit("1" * 40)
        assert not clone.holds_ancestor("1" * 40, pushed[-1])
        assert len(git_server.requests) == asked


def test_cap_keeps_the_newest(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 5)
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "MAX_REVISIONS": "2"})
    assert result.code == 0, result.output
    assert sorted(t["slug"] for t in ponos.children()) == sorted(f"import-{h}" for h in pushed[-2:])
    assert re.search(r"\b3 revision\(s\) left out\b", result.output), result.output
    assert "MAX_REVISIONS" in result.output
    plan = ponos.plan()
    assert [r["hash"] for r in plan["revisions"]] == pushed[-2:]
    assert plan["left_out"]["count"] == 3
    left = plan["left_out"]["revisions"]
    assert [r["hash"] for r in left] == pushed[:3]
    assert all(r["summary"] and r["author"] == "Ada Worker" and r["date"] for r in left)
    assert plan["summary"]["left_out"] == 3


# --- settings errors ---------------------------------------------------------------------------------


def test_ponos_workflow_only_names_ponos_process(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    env = {**ponos.env, "REPOSITORY_URL": served(), "PONOS_WORKFLOW": ponos.process["id"]}
    del env["PONOS_PROCESS"]

    result = run_tool(["trigger"], env)
    assert_config_error(result, "PONOS_PROCESS", "PONOS_WORKFLOW")
    assert "no longer" in error_lines(result.output)[0]
    assert_nothing_created(ponos)


def test_missing_repository_url(ponos: Ponos) -> None:
    result = ponos.run_trigger({})
    assert_config_error(result, "REPOSITORY_URL")
    assert "set REPOSITORY_URL" in error_lines(result.output)[0]
    assert_nothing_created(ponos)


def test_malformed_ponos_process(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    result = ponos.run_trigger({"REPOSITORY_URL": served(), "PONOS_PROCESS": "not-a-uuid"})
    assert_config_error(result, "PONOS_PROCESS", "UUID")
    assert_nothing_created(ponos)


def test_unknown_process_is_a_clear_error(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    result = ponos.run_trigger(
        {"REPOSITORY_URL": served(), "PONOS_PROCESS": "00000000-0000-4000-8000-000000000000"}
    )
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    assert ponos.children() == []


# --- private repository ------------------------------------------------------------------------------


def test_private_repository_with_token(
    emulator: Emulator, repo: RepoBuilder, private_git_server: GitHTTPServer, tmp_path: Path
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 2)
    repo.publish(private_git_server.root / "private.git")
    url = private_git_server.url("private.git")
    # As on Arkindex: the repository settings, token included, are in the process environment.
    ponos = make_ponos(emulator, tmp_path / "data", {"REPOSITORY_URL": url, "REPOSITORY_TOKEN": REPO_TOKEN})

    result = ponos.run_trigger({"REPOSITORY_BEFORE": base})
    assert result.code == 0, result.output
    assert [r["hash"] for r in ponos.plan()["revisions"]] == pushed
    assert len(ponos.children()) == 2
    assert REPO_TOKEN not in result.output
    assert REPO_TOKEN not in (ponos.data / "current" / "import-plan.json").read_text()
    for request in create_task_requests(emulator):
        assert REPO_TOKEN not in json.dumps(request["body"])

    dry = ponos.run_trigger({"REPOSITORY_BEFORE": base}, args=("--dry-run", "--format", "json"))
    assert dry.code == 0, dry.output
    assert [r["hash"] for r in json.loads(dry.stdout)["revisions"]] == pushed
    assert REPO_TOKEN not in dry.output


def test_private_repository_without_token(
    ponos: Ponos, repo: RepoBuilder, private_git_server: GitHTTPServer
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.publish(private_git_server.root / "private.git")

    result = ponos.run_trigger({"REPOSITORY_URL": private_git_server.url("private.git")})
    assert_config_error(result, "REPOSITORY_TOKEN")
    assert_nothing_created(ponos)


def test_private_repository_with_a_wrong_token(
    ponos: Ponos, repo: RepoBuilder, private_git_server: GitHTTPServer
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.publish(private_git_server.root / "private.git")
    wrong = "glpat-WRONG-token-1234"

    result = ponos.run_trigger(
        {"REPOSITORY_URL": private_git_server.url("private.git"), "REPOSITORY_TOKEN": wrong}
    )
    assert_config_error(result, "REPOSITORY_TOKEN")
    assert wrong not in result.output
    assert_nothing_created(ponos)


# --- dry run ------------------------------------------------------------------------------------------


def test_dry_run_needs_no_arkindex_setting(
    emulator: Emulator, repo: RepoBuilder, served: Callable[[], str], tmp_path: Path
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 3)
    env = {
        "REPOSITORY_URL": served(),
        "REPOSITORY_BEFORE": base,
        "PONOS_DATA": str(tmp_path / "data"),
        "RETRY_BASE_DELAY": "0.01",
    }

    text = run_tool(["trigger", "--dry-run"], env)
    assert text.code == 0, text.output
    for commit in pushed:
        assert commit[:10] in text.stdout
        assert f"import-{commit}" in text.stdout
    rows = [line for line in text.stdout.splitlines() if line.startswith(tuple(c[:10] for c in pushed))]
    assert [row[:10] for row in rows] == [c[:10] for c in pushed]
    assert all(row.rstrip().endswith("new") for row in rows)

    as_json = run_tool(["trigger", "--dry-run", "--format", "json"], env)
    assert as_json.code == 0, as_json.output
    plan = json.loads(as_json.stdout)
    assert [r["hash"] for r in plan["revisions"]] == pushed
    assert {r["task"]["state"] for r in plan["revisions"]} == {"new"}

    assert emulator.requests == []
    assert not (tmp_path / "data").exists()


def without_dry_run(plan: dict) -> dict:
    """The dry run's plan without what only the dry run shows: that it is one, its image, and each
    revision's configuration and workers."""
    plan = {k: v for k, v in plan.items() if k not in ("dry_run", "image")}
    drop = ("configuration", "workers")
    plan["revisions"] = [{k: v for k, v in r.items() if k not in drop} for r in plan["revisions"]]
    return plan


def test_dry_run_json_is_the_plan_file(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    """`--dry-run --format json` prints what `import-plan.json` holds for the same state, plus what only
    the dry run shows; the plan file of a real run keeps its shape."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    history(repo, 3)
    env = {"REPOSITORY_URL": served(), "REPOSITORY_BEFORE": base, "MAX_REVISIONS": "2"}

    dry_first = ponos.run_trigger(env, args=("--dry-run", "--format", "json"))
    assert dry_first.code == 0, dry_first.output
    assert ponos.children() == []
    assert write_requests(ponos.emulator) == []

    assert ponos.run_trigger(env).code == 0
    created = ponos.plan()

    def without_outcome(plan: dict) -> dict:
        plan = json.loads(json.dumps(plan))
        for revision in plan["revisions"]:
            revision["task"].update(state=None, id=None)
        plan.pop("summary")
        return plan

    assert without_outcome(without_dry_run(json.loads(dry_first.stdout))) == without_outcome(created)
    assert "dry_run" not in created
    assert all("workers" not in revision for revision in created["revisions"])

    # Once the tasks exist, the dry run shows them as already there, exactly as a re-run's plan file.
    dry_again = ponos.run_trigger(env, args=("--dry-run", "--format", "json"))
    assert dry_again.code == 0, dry_again.output
    assert ponos.run_trigger(env).code == 0
    assert without_dry_run(json.loads(dry_again.stdout)) == ponos.plan()


# --- the push's own commits, whatever the branch holds now ------------------------------------------


def test_push_range_ends_at_after_even_when_the_branch_moved_on(
    ponos: Ponos, repo: RepoBuilder, served
) -> None:
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 2)
    history(repo, 2, start=2)  # pushed later, by another push with its own trigger
    url = served()

    result = ponos.run_trigger(
        {
            "REPOSITORY_URL": url,
            "REPOSITORY_REF": "main",
            "REPOSITORY_BEFORE": base,
            "REPOSITORY_AFTER": pushed[-1],
        }
    )
    assert result.code == 0, result.output
    assert [r["hash"] for r in ponos.plan()["revisions"]] == pushed
    assert sorted(t["slug"] for t in ponos.children()) == sorted(f"import-{h}" for h in pushed)


def test_new_branch_push_imports_after_even_when_the_branch_moved_on(
    ponos: Ponos, repo: RepoBuilder, served
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.git("checkout", "--quiet", "-b", "feature")
    pushed = repo.commit("Feature work", {"feature.txt": "1"})
    repo.commit("Later feature work", {"feature.txt": "2"})
    url = served()

    result = ponos.run_trigger(
        {
            "REPOSITORY_URL": url,
            "REPOSITORY_REF": "feature",
            "REPOSITORY_BEFORE": NULL_SHA,
            "REPOSITORY_AFTER": pushed,
        }
    )
    assert result.code == 0, result.output
    (child,) = ponos.children()
    assert child["slug"] == f"import-{pushed}"
    assert child["env"]["REPOSITORY_REF"] == "refs/heads/feature"


def test_after_off_the_default_branch_gets_no_guessed_ref(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    """Without REPOSITORY_REF the default branch is a guess: a commit not on it must not be labelled with it."""
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.git("checkout", "--quiet", "-b", "feature")
    pushed = repo.commit("Feature work", {"feature.txt": "1"})
    repo.git("checkout", "--quiet", "main")
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_AFTER": pushed})
    assert result.code == 0, result.output
    (child,) = ponos.children()
    assert child["slug"] == f"import-{pushed}"
    assert "REPOSITORY_REF" not in child["env"]
    assert "set REPOSITORY_REF" in result.output
    assert ponos.plan()["ref"] is None


def test_annotated_tag_push(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    tagged = repo.commit("Release", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.git("tag", "--annotate", "--message", "Release 1.0", "v1.0")
    repo.commit("After the release", {"README.md": "# Workers, later\n"})
    url = served()

    result = ponos.run_trigger(
        {
            "REPOSITORY_URL": url,
            "REPOSITORY_REF": "v1.0",
            "REPOSITORY_BEFORE": NULL_SHA,
            "REPOSITORY_AFTER": tagged,
        }
    )
    assert result.code == 0, result.output
    (child,) = ponos.children()
    assert child["slug"] == f"import-{tagged}"
    assert child["env"]["REPOSITORY_REF"] == "refs/tags/v1.0"


def test_push_with_nothing_new_creates_nothing(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    tip = repo.commit("Only commit", {"a.txt": "a"})
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": tip, "REPOSITORY_AFTER": tip})
    assert result.code == 0, result.output
    assert ponos.children() == []
    assert ponos.plan()["revisions"] == []


def test_arkindex_process_id_is_read_as_ponos_process(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    tip = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    env = {**ponos.env, "REPOSITORY_URL": served(), "ARKINDEX_PROCESS_ID": ponos.process["id"]}
    del env["PONOS_PROCESS"]

    result = run_tool(["trigger"], env)
    assert result.code == 0, result.output
    assert [t["slug"] for t in ponos.children()] == [f"import-{tip}"]


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("PONOS_TASK", "42", ("PONOS_TASK", "UUID")),
        ("MAX_REVISIONS", "0", ("MAX_REVISIONS", "at least 1")),
        ("REPOSITORY_BEFORE", "abc123", ("REPOSITORY_BEFORE", "40")),
        ("REPOSITORY_URL", "ext::false", ("REPOSITORY_URL", "ext::")),
        ("REPOSITORY_REF", "--upload-pack=touch /tmp/pwned", ("REPOSITORY_REF",)),
    ],
)
def test_malformed_setting_is_one_clear_line(
    ponos: Ponos, git_server: GitHTTPServer, setting: str, value: str, words: tuple[str, ...]
) -> None:
    env = {"REPOSITORY_URL": git_server.url("workers.git"), setting: value}
    result = ponos.run_trigger(env)
    assert_config_error(result, *words)
    assert_nothing_created(ponos)


def test_ref_head_means_the_default_branch(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]
) -> None:
    """REPOSITORY_REF=HEAD is resolved to the branch it names: versions must not get a branch 'HEAD'."""
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    tip = repo.commit("Add a worker", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    url = served()

    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_REF": "HEAD"})
    assert result.code == 0, result.output
    (child,) = ponos.children()
    assert child["slug"] == f"import-{tip}"
    assert child["env"]["REPOSITORY_REF"] == "refs/heads/main"


# --- selection on histories with merges (issue 15) -------------------------------------------------


def first_parent_range(git_root: Path, target: str, before: str) -> list[str]:
    """What git itself selects on the served repository: `rev-list --first-parent --reverse TARGET ^BEFORE`."""
    git_dir = f"--git-dir={git_root / 'workers.git'}"
    out = subprocess.run(
        ["git", git_dir, "rev-list", "--first-parent", "--reverse", target, f"^{before}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def merged_history(repo: RepoBuilder) -> dict[str, str]:
    """main: base - m1 - merge(side) - m2 - merge2(side2) - m3, with side branches of two commits."""
    marks: dict[str, str] = {"base": repo.commit("Initial commit", {"README.md": "# Workers\n"})}
    marks["m1"] = repo.commit("Main 1", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "1")})
    for n in (1, 2):
        repo.git("checkout", "--quiet", "-b", f"side{n}")
        marks[f"s{n}a"] = repo.commit(f"Side {n} a", {f"side{n}.txt": "a"})
        marks[f"s{n}b"] = repo.commit(f"Side {n} b", {f"side{n}.txt": "b"})
        repo.git("checkout", "--quiet", "main")
        marks[f"m{n + 1}"] = repo.commit(
            f"Main {n + 1}", {"arkindex/hello.yml": worker_yaml("hello", "Hello", str(n + 1))}
        )
        repo.git("merge", "--quiet", "--no-ff", "--no-edit", f"side{n}")
        marks[f"merge{n}"] = repo.head()
    marks["m4"] = repo.commit("Main 4", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "4")})
    return marks


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("base", None),  # a linear push over merges
        ("s1a", None),  # `before` reached only through the first merge's second parent
        ("s2b", None),  # the second side's tip
        ("m1", "merge2"),  # AFTER below the tip
        ("s1b", "m3"),  # both: `before` through a merge, AFTER not the tip
    ],
)
def test_selection_is_git_rev_list_first_parent(
    ponos: Ponos, repo: RepoBuilder, served: Callable[[], str], git_root: Path, before: str, after: str | None
) -> None:
    marks = merged_history(repo)
    url = served()
    env = {"REPOSITORY_URL": url, "REPOSITORY_REF": "main", "REPOSITORY_BEFORE": marks[before]}
    target = marks[after] if after else marks["m4"]
    if after:
        env["REPOSITORY_AFTER"] = target

    result = ponos.run_trigger(env)

    assert result.code == 0, result.output
    expected = first_parent_range(git_root, target, marks[before])
    assert expected, "the case selects nothing: it tests nothing"
    assert [r["hash"] for r in ponos.plan()["revisions"]] == expected


# --- the first clone: the ref's last SHALLOW_DEPTH commits (issue 15) ------------------------------

WHOLE_HISTORY = "cloning the whole history"


def short_push_over_a_deep_history(repo: RepoBuilder) -> tuple[str, str | None]:
    repo.commits(SHALLOW_DEPTH + 100)
    return merged_history(repo)["m1"], None


def before_through_a_merge_over_a_deep_history(repo: RepoBuilder) -> tuple[str, str | None]:
    repo.commits(SHALLOW_DEPTH + 100)
    return merged_history(repo)["s1a"], None


def push_longer_than_the_clone(repo: RepoBuilder) -> tuple[str, str | None]:
    repo.commits(SHALLOW_DEPTH + 100)
    return repo.git("rev-parse", f"main~{SHALLOW_DEPTH + 50}"), None


def after_below_the_clone(repo: RepoBuilder) -> tuple[str, str | None]:
    repo.commits(SHALLOW_DEPTH + 100)
    return repo.git("rev-parse", f"main~{SHALLOW_DEPTH + 30}"), repo.git(
        "rev-parse", f"main~{SHALLOW_DEPTH + 20}"
    )


def merge_of_a_fork_below_the_clone(repo: RepoBuilder) -> tuple[str, str | None]:
    """`before` is near the tip through a merge, but the first-parent line down to its fork is not."""
    repo.commits(10)
    repo.git("checkout", "--quiet", "-b", "side")
    before = repo.commits(2, "Side", "side.txt")
    repo.git("checkout", "--quiet", "main")
    repo.commits(SHALLOW_DEPTH + 50)
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "side")
    return before, None


def merge_of_a_long_side_from_the_root(repo: RepoBuilder) -> tuple[str, str | None]:
    """The first-parent line is short down to the root, but `before` reaches that root only through a
    side line longer than the clone: in the clone alone, the root would look new to the push."""
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.git("checkout", "--quiet", "-b", "side")
    before = repo.commits(SHALLOW_DEPTH + 50, "Side", "side.txt")
    repo.git("checkout", "--quiet", "main")
    history(repo, 2)
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "side")
    return before, None


def after_reaching_before_only_below_the_clone(repo: RepoBuilder) -> tuple[str, str | None]:
    """The clone holds `before` (the tip merges a branch forked from it) and its parent, which is on
    AFTER's first-parent line; but AFTER reaches `before` only through a side line longer than the
    clone. In the clone alone, `before` would look like no ancestor of AFTER: a setting error."""
    repo.commit("Initial commit", {"README.md": "# Workers\n"})
    repo.git("checkout", "--quiet", "-b", "before")
    before = repo.commit("Before", {"before.txt": "1"})
    repo.git("checkout", "--quiet", "-b", "long")
    repo.commits(SHALLOW_DEPTH + 50, "Long", "long.txt")
    repo.git("checkout", "--quiet", "main")
    history(repo, 1)
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "long")
    after = repo.head()
    repo.git("checkout", "--quiet", "-b", "short", "before")
    repo.commit("Short", {"short.txt": "1"})
    repo.git("checkout", "--quiet", "main")
    repo.git("merge", "--quiet", "--no-ff", "--no-edit", "short")
    return before, after


@pytest.mark.parametrize(
    ("shape", "whole_history"),
    [
        (short_push_over_a_deep_history, False),
        (before_through_a_merge_over_a_deep_history, False),
        (push_longer_than_the_clone, True),
        (after_below_the_clone, True),
        (merge_of_a_fork_below_the_clone, True),
        (merge_of_a_long_side_from_the_root, True),
        (after_reaching_before_only_below_the_clone, True),
    ],
)
def test_the_first_clone_holds_the_last_commits_and_the_whole_history_comes_when_they_do_not_tell(
    ponos: Ponos,
    repo: RepoBuilder,
    served: Callable[[], str],
    git_root: Path,
    shape: Callable[[RepoBuilder], tuple[str, str | None]],
    whole_history: bool,
) -> None:
    """The selection is git's over the whole history, whichever clone gave it; the whole history is
    cloned only when the ref's last commits cannot tell where the push starts."""
    before, after = shape(repo)
    url = served()
    # No REPOSITORY_REF: the default branch is a guess, kept only when the target is known to be on it.
    env = {
        "REPOSITORY_URL": url,
        "REPOSITORY_BEFORE": before,
        **({"REPOSITORY_AFTER": after} if after else {}),
    }

    result = ponos.run_trigger(env)

    assert result.code == 0, result.output
    expected = first_parent_range(git_root, after or "main", before)
    assert expected, "the case selects nothing: it tests nothing"
    plan = ponos.plan()
    selected = [r["hash"] for r in plan["left_out"]["revisions"] + plan["revisions"]]
    assert selected == expected
    assert plan["ref"] == "refs/heads/main"
    assert (WHOLE_HISTORY in result.output) is whole_history, result.output


def test_tag_push_is_labelled_a_tag(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    history(repo, 2)
    repo.tag("v1.0")
    url = served()
    result = ponos.run_trigger(
        {"REPOSITORY_URL": url, "REPOSITORY_REF": "refs/tags/v1.0", "REPOSITORY_BEFORE": "0" * 40}
    )
    assert result.code == 0, result.output
    assert "1 revision(s) chosen (new tag) on refs/tags/v1.0" in result.output
    assert ponos.plan()["selection"] == "new tag"


def test_one_log_line_per_created_task(ponos: Ponos, repo: RepoBuilder, served: Callable[[], str]) -> None:
    """A process admin finds the task of a revision in the trigger's log: short hash, slug, task ID;
    with LOG_FORMAT=json, as fields of their own."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    pushed = history(repo, 3)
    url = served()
    result = ponos.run_trigger({"REPOSITORY_URL": url, "REPOSITORY_BEFORE": base, "LOG_FORMAT": "json"})
    assert result.code == 0, result.output
    ids = {t["slug"]: t["id"] for t in ponos.children()}
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    created = [line for line in lines if line["message"].endswith(")") and "created task" in line["message"]]
    assert len(created) == 3
    for commit in pushed:
        line = next(line for line in created if line.get("revision") == commit)
        assert line["slug"] == f"import-{commit}" and line["task_id"] == ids[f"import-{commit}"]
        assert (
            line["message"]
            == f"revision {commit[:10]}: created task import-{commit} ({ids[f'import-{commit}']})"
        )
    closing = next(line for line in lines if line["message"].startswith("trigger done"))
    assert closing["counts"]["created"] == 3 and "total" in closing["phases"]
