"""Acceptance tests of the per-revision import (issue 3) and its bad inputs (issue 5).

Every test runs `arkindex-git-import` as Ponos would (a child process with the task's environment)
against real repositories served by `git http-backend` and the emulator, through `arkindex-client`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from git_import.git.repo import GitEnv, GitError, Repo
from git_import.local.emulator import Emulator
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import RepoBuilder, worker_yaml
from git_import.rules.configuration import MAX_FILE_SIZE

from conftest import REPO_TOKEN, Documented, Ponos, Result, make_ponos

TEMPLATE = "registry.example.com/{slug}/{hash}:{ref}-{short_hash}"


def web(url: str) -> str:
    """The repository's web URL, as the revision URLs use it."""
    return url.rstrip("/").removesuffix(".git")


def process_for(emulator: Emulator, tmp_path: Path, url: str, name: str = "data", **env: str) -> Ponos:
    """A repository process whose environment holds the settings, as Arkindex sets them for a push."""
    settings = {"REPOSITORY_URL": url, "REPOSITORY_REF": "refs/heads/main", "WORKER_IMAGE_TEMPLATE": TEMPLATE}
    return make_ponos(emulator, tmp_path / name, {**settings, **env})


def trigger_and_run(ponos: Ponos, before: str | None) -> list[tuple[dict, Result]]:
    """Run the trigger for a push, then every task it created, oldest revision first."""
    result = ponos.run_trigger({"REPOSITORY_BEFORE": before} if before else {})
    assert result.code == 0, result.output
    order = [item["task"]["slug"] for item in ponos.plan()["revisions"]]
    children = sorted(ponos.children(), key=lambda task: order.index(task["slug"]))
    assert [task["slug"] for task in children] == order
    return [(task, ponos.run_child(task)) for task in children]


def revision_task(ponos: Ponos, commit: str, ref: str | None = "refs/heads/main") -> dict:
    """Seed the task the trigger would have created for `commit`."""
    env = {"REPOSITORY_REVISION": commit}
    if ref:
        env["REPOSITORY_REF"] = ref
    return ponos.emulator.create_task(
        ponos.process["id"],
        slug=f"import-{commit}",
        parents=[ponos.trigger["id"]],
        image="registry.example.com/git-import:1.0",
        command=f"arkindex-git-import revision {commit}",
        env=env,
        state="running",
    )


def report_of(ponos: Ponos, task: dict) -> dict:
    return json.loads((ponos.data / task["id"] / "current" / "import-report.json").read_text())


def operations(emulator: Emulator, name: str) -> list[dict]:
    return [r for r in emulator.requests if r["operation"] == name]


def state(emulator: Emulator) -> tuple[list[dict], list[dict]]:
    workers = sorted(emulator.workers(), key=lambda w: w["slug"])
    versions = sorted(emulator.versions(), key=lambda v: (v["worker_id"], v["revision_url"]))
    return workers, versions


@pytest.fixture
def pushed(repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer) -> dict:
    """Before the push: a README. The push: three commits declaring two workers."""
    base = repo.commit("Initial commit", {"README.md": "# Workers\n"})
    add_hello = repo.commit("Add hello", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "Says hello")})
    describe = repo.commit(
        "Describe hello better",
        {"arkindex/hello.yml": worker_yaml("hello", "Hello", "Says hello to every page")},
    )
    add_goodbye = repo.commit(
        "Add goodbye",
        {"arkindex/goodbye.yml": worker_yaml("goodbye", "Goodbye", "Says goodbye", type="recognizer")},
    )
    repo.publish(git_root / "workers.git")
    return {
        "url": git_server.url("workers.git"),
        "base": base,
        "commits": [add_hello, describe, add_goodbye],
    }


def test_push_of_three_commits_registers_two_workers_and_reports(emulator, tmp_path, pushed):
    url, commits = pushed["url"], pushed["commits"]
    ponos = process_for(emulator, tmp_path, url)

    runs = trigger_and_run(ponos, pushed["base"])

    assert [task["env"]["REPOSITORY_REVISION"] for task, _ in runs] == commits
    for _, result in runs:
        assert result.code == 0, result.output
    workers, versions = state(emulator)
    assert [(w["slug"], w["name"], w["type"], w["description"], w["repository_url"]) for w in workers] == [
        ("goodbye", "Goodbye", "recognizer", "Says goodbye", web(url)),
        ("hello", "Hello", "classifier", "Says hello to every page", web(url)),
    ]
    ids = {w["slug"]: w["id"] for w in workers}
    expected = [("hello", commits[0]), ("hello", commits[1]), ("hello", commits[2]), ("goodbye", commits[2])]
    assert sorted((v["worker_id"], v["revision_url"]) for v in versions) == sorted(
        (ids[slug], f"{web(url)}/commit/{commit}") for slug, commit in expected
    )
    for version in versions:
        slug = next(s for s, i in ids.items() if i == version["worker_id"])
        commit = version["revision_url"].rsplit("/", 1)[-1]
        assert version["docker_image_iid"] == f"registry.example.com/{slug}/{commit}:main-{commit[:8]}"
        assert (version["branch"], version["tag"]) == ("main", None)
    # The version holds the worker's file as it was in that commit.
    first = next(v for v in versions if v["revision_url"].endswith(commits[0]))
    assert first["yaml"] == worker_yaml("hello", "Hello", "Says hello")
    # The description change reached Arkindex through PartialUpdateWorker, sent by the push's newest
    # revision only: sibling tasks run in any order on Ponos, so an older one must not win.
    updates = operations(emulator, "PartialUpdateWorker")
    assert [u["body"] for u in updates] == [{"description": "Says hello to every page"}]
    assert updates[0]["task_id"] == runs[2][0]["id"]
    assert "updated worker description" in runs[2][1].output
    assert "left to the push's newest revision" in runs[1][1].output

    # The last task's report: each worker, its version, created or existing, and no error.
    report = report_of(ponos, runs[2][0])
    assert report["revision"] == commits[2]
    assert report["repository_url"] == url
    assert report["ref"] == "refs/heads/main"
    assert report["revision_url"] == f"{web(url)}/commit/{commits[2]}"
    assert report["configuration"] == "current"
    assert report["errors"] == []
    assert [(w["slug"], w["file"], w["version"]) for w in report["workers"]] == [
        ("goodbye", "arkindex/goodbye.yml", "created"),
        ("hello", "arkindex/hello.yml", "created"),
    ]
    by_id = {v["id"]: v for v in versions}
    for entry in report["workers"]:
        assert entry["worker_id"] == ids[entry["slug"]]
        assert by_id[entry["version_id"]]["revision_url"] == f"{web(url)}/commit/{commits[2]}"


def test_rerun_of_every_task_changes_nothing(emulator, tmp_path, pushed):
    ponos = process_for(emulator, tmp_path, pushed["url"])
    trigger_and_run(ponos, pushed["base"])
    workers, versions = state(emulator)
    tasks = len(emulator.tasks())

    again = trigger_and_run(ponos, pushed["base"])

    assert len(emulator.tasks()) == tasks
    assert state(emulator) == (workers, versions)
    for task, result in again:
        assert result.code == 0, result.output
        assert {w["version"] for w in report_of(ponos, task)["workers"]} == {"existing"}
        assert "0 new version(s)" in result.output
    created = [r for r in operations(emulator, "ImportWorkerVersion") if r["status"] == 201]
    assert len(created) == 4


def test_moved_tag_updates_the_existing_version(emulator, tmp_path, repo, git_root, git_server):
    commit = repo.commit("Add hello", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.publish(git_root / "workers.git")
    url = git_server.url("workers.git")
    on_main = process_for(emulator, tmp_path, url, name="main")
    trigger_and_run(on_main, None)
    ((version),) = emulator.versions()
    assert (version["branch"], version["tag"]) == ("main", None)

    # The tag v1 is pushed on that commit: Arkindex starts a process for the tag.
    repo.tag("v1", commit)
    repo.publish(git_root / "workers.git")
    tag_push = process_for(emulator, tmp_path, url, name="tag", REPOSITORY_REF="refs/tags/v1")
    ((task, result),) = trigger_and_run(tag_push, None)

    assert result.code == 0, result.output
    assert task["env"]["REPOSITORY_REF"] == "refs/tags/v1"
    ((after),) = emulator.versions()
    assert after["id"] == version["id"]
    assert after["tag"] == "v1"
    assert after["branch"] == "main"
    (update,) = operations(emulator, "PartialUpdateWorkerVersion")
    assert update["body"] == {"tag": "v1"}
    (entry,) = report_of(tag_push, task)["workers"]
    assert entry["version"] == "existing"
    assert entry["updated"] == ["version tag"]


def test_legacy_arkindex_yml_is_converted(emulator, tmp_path, ponos, repo, git_root, git_server):
    legacy = (
        "version: 2\n"
        "workers:\n"
        "  - slug: inline\n"
        "    name: Inline worker\n"
        "    type: classifier\n"
        "    description: docs/inline.md\n"
        "    gpu_usage: disabled\n"
        "  - workers/*.yml\n"
    )
    commit = repo.commit(
        "Legacy configuration",
        {
            ".arkindex.yml": legacy,
            "docs/inline.md": "Classifies pages inline.\n",
            "workers/globbed.yml": (
                "slug: globbed\nname: Globbed\ntype: recognizer\ndescription: docs/globbed.md\n"
            ),
            "docs/globbed.md": "Found by a pattern.\n",
        },
    )
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"))

    result = ponos.run_child(revision_task(ponos, commit))

    assert result.code == 0, result.output
    workers, versions = state(emulator)
    assert [(w["slug"], w["name"], w["type"], w["description"]) for w in workers] == [
        ("globbed", "Globbed", "recognizer", "Found by a pattern."),
        ("inline", "Inline worker", "classifier", "Classifies pages inline."),
    ]
    assert len(versions) == 2
    inline = next(v for v in versions if v["worker_id"] == workers[1]["id"])
    # The version holds the converted (current format) configuration.
    assert "display_name: Inline worker" in inline["yaml"]
    assert "description: Classifies pages inline." in inline["yaml"]


def test_current_format_wins_over_legacy(emulator, tmp_path, repo, git_root, git_server):
    commit = repo.commit(
        "Both formats",
        {
            "arkindex/hello.yml": worker_yaml("hello", "Hello"),
            ".arkindex.yml": "version: 2\nworkers:\n  - slug: old\n    name: Old\n    type: t\n",
        },
    )
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"))
    task = revision_task(ponos, commit)

    result = ponos.run_child(task)

    assert result.code == 0, result.output
    assert [w["slug"] for w in emulator.workers()] == ["hello"]
    assert report_of(ponos, task)["configuration"] == "current"
    assert "the current format wins" in result.output


def error_lines(result: Result) -> list[str]:
    """The messages of the ERROR lines, without their date, time and level."""
    return [line.split(" ERROR ", 1)[1].strip() for line in result.output.splitlines() if " ERROR " in line]


def test_invalid_files_register_nothing_and_are_all_listed(emulator, tmp_path, repo, git_root, git_server):
    """A file the validator rejects and a file that is not YAML, beside a valid worker: the valid worker is
    not registered either (a revision is registered whole or not at all), both files are listed, exit 2."""
    commit = repo.commit(
        "One good, two bad",
        {
            "arkindex/good.yml": worker_yaml("good", "Good"),
            "arkindex/bad.yml": worker_yaml("bad", "Bad").replace("gpu_usage: disabled", "gpu_usage: always"),
            "arkindex/broken.yml": "slug: [unclosed\n",
        },
    )
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"))
    task = revision_task(ponos, commit)

    result = ponos.run_child(task)

    assert result.code == 2, result.output
    short = commit[:10]
    assert error_lines(result) == [
        f"revision {short}: arkindex/bad.yml: the worker configuration is invalid: "
        "gpu_usage: 'always' not in ('supported', 'required', 'disabled') (fix the fields named; "
        "`worker-validator validate arkindex/bad.yml`, from teklia-worker-configuration, checks it locally)",
        f"revision {short}: arkindex/broken.yml: invalid YAML at line 2, column 1: while parsing a flow "
        "sequence: expected ',' or ']', but got '<stream end>' (fix the YAML syntax there)",
        f"revision {short}: nothing was registered: 2 configuration file(s) above are invalid "
        "(fix the files named above and push again)",
    ], result.output
    assert operations(emulator, "CreateWorker") == []
    assert emulator.workers() == [] and emulator.versions() == []
    report = report_of(ponos, task)
    assert report["workers"] == []
    assert [error["file"] for error in report["errors"]] == ["arkindex/bad.yml", "arkindex/broken.yml"]
    assert [f"revision {short}: {e['file']}: {e['message']}" for e in report["errors"]] == error_lines(
        result
    )[:2]


def test_commit_without_configuration(emulator, tmp_path, repo, git_root, git_server):
    commit = repo.commit("Just a README", {"README.md": "# Nothing to see\n"})
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"))
    task = revision_task(ponos, commit)

    result = ponos.run_child(task)

    assert result.code == 0, result.output
    assert "no worker configuration" in result.output
    assert operations(emulator, "CreateWorker") == []
    report = report_of(ponos, task)
    assert (report["configuration"], report["workers"], report["errors"]) == ("none", [], [])


def test_private_repository_with_the_process_token(emulator, tmp_path, private_git_server):
    repo = RepoBuilder(tmp_path / "private-work")
    base = repo.commit("Initial commit", {"README.md": "# Private\n"})
    repo.commit("Add secret worker", {"arkindex/secret.yml": worker_yaml("secret", "Secret")})
    repo.publish(private_git_server.root / "workers.git")
    url = private_git_server.url("workers.git")
    ponos = process_for(emulator, tmp_path, url, REPOSITORY_TOKEN=REPO_TOKEN)

    ((task, result),) = trigger_and_run(ponos, base)

    assert result.code == 0, result.output
    # The token reached the child through the process environment, never through CreateTask.
    assert all(REPO_TOKEN not in json.dumps(r["body"]) for r in operations(emulator, "CreateTask"))
    assert [w["slug"] for w in emulator.workers()] == ["secret"]
    assert REPO_TOKEN not in result.output
    assert REPO_TOKEN not in json.dumps(report_of(ponos, task))
    # Without the token, the same task cannot fetch the commit.
    denied = ponos.run_child(task, {"REPOSITORY_TOKEN": ""})
    assert denied.code != 0
    assert "REPOSITORY_TOKEN" in denied.output


# --- issue 5: bad inputs of the per-revision task ------------------------------------------------


def alias_bomb() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return worker_yaml("bomb", "Bomb") + "\n".join(lines) + "\n"


# The last line of a revision with bad files, as the README's per-revision section quotes it.
CLOSING = (
    "revision <hash>: nothing was registered: <n> configuration file(s) above are invalid "
    "(fix the files named above and push again)"
)
GOOD = {"arkindex/aaa-good.yml": worker_yaml("good", "Good")}
BIG = worker_yaml("big", "Big") + "# " + "x" * MAX_FILE_SIZE + "\n"
LEGACY_INLINE = "  - slug: inline\n    name: Inline\n    type: classifier\n    description: docs/inline.md\n"


@dataclass
class BadInput:
    id: str
    files: dict[str, str | bytes]
    # The error line as the README's per-revision table shows it: what follows `revision <hash>: ` for a
    # bad file, the whole line for a bad setting.
    message: Documented
    symlinks: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # settings of the process
    # A valid worker beside the bad input, which must not be registered either (a legacy `.arkindex.yml`
    # holds its own where it can: a worker file of the current format would win over it).
    beside: dict[str, str] = field(default_factory=lambda: dict(GOOD))


BAD_INPUTS = [
    BadInput(
        "over 1 MiB",
        {"arkindex/big.yml": BIG},
        Documented(
            "<file>: the file is <size> bytes, over the 1 MiB limit for a worker configuration file "
            "(keep worker configuration files small; move large data out of them)",
            {"<file>": "arkindex/big.yml", "<size>": str(len(BIG.encode()))},
        ),
    ),
    BadInput(
        "alias bomb",
        {"arkindex/bomb.yml": alias_bomb()},
        Documented(
            "<file>: the YAML expands to more than 100000 nodes through aliases (an alias bomb) "
            "(remove the YAML anchors and aliases that multiply its content)",
            {"<file>": "arkindex/bomb.yml"},
        ),
    ),
    BadInput(
        "symlink",
        {"shared/worker.yml": worker_yaml("linked", "Linked")},
        Documented(
            "<file>: the file is a symbolic link; worker configuration files must be regular files "
            "(replace the link with the file itself)",
            {"<file>": "arkindex/linked.yml"},
        ),
        symlinks={"arkindex/linked.yml": "../shared/worker.yml"},
    ),
    BadInput(
        "invalid UTF-8",
        {"arkindex/latin1.yml": worker_yaml("latin", "Caf\xe9").encode("latin-1")},
        Documented(
            "<file>: the file is not valid UTF-8 at line <line>, column <column> (save the file as UTF-8)",
            {"<file>": "arkindex/latin1.yml", "<line>": "2", "<column>": "18"},
        ),
    ),
    BadInput(
        "YAML syntax error",
        {"arkindex/broken.yml": "slug: [unclosed\n"},
        Documented(
            "<file>: invalid YAML at line <line>, column <column>: <what the YAML parser found> "
            "(fix the YAML syntax there)",
            {
                "<file>": "arkindex/broken.yml",
                "<line>": "2",
                "<column>": "1",
                "<what the YAML parser found>": None,
            },
        ),
    ),
    BadInput(
        "not a mapping",
        {"arkindex/list.yml": "- slug: one\n- slug: two\n"},
        Documented(
            "<file>: the file does not hold a YAML mapping (a worker) (write the worker's fields, such as "
            "slug, display_name, type and description, as one YAML mapping)",
            {"<file>": "arkindex/list.yml"},
        ),
    ),
    BadInput(
        "rejected by the validator",
        {"arkindex/bad.yml": worker_yaml("bad", "Bad").replace("gpu_usage: disabled", "gpu_usage: always")},
        Documented(
            "<file>: the worker configuration is invalid: <field>: <what is wrong> (fix the fields named; "
            "`worker-validator validate <file>`, from teklia-worker-configuration, checks it locally)",
            {"<file>": "arkindex/bad.yml", "<field>": "gpu_usage", "<what is wrong>": None},
        ),
    ),
    BadInput(
        "duplicate slug",
        {"arkindex/one.yml": worker_yaml("same", "One"), "arkindex/two.yml": worker_yaml("same", "Two")},
        Documented(
            "<later file>: the worker slug '<slug>' is declared by <earlier file> too "
            "(give each worker its own slug)",
            {"<later file>": "arkindex/two.yml", "<slug>": "same", "<earlier file>": "arkindex/one.yml"},
        ),
    ),
    BadInput(
        "legacy file without a workers list",
        {".arkindex.yml": "version: 2\n"},
        Documented(
            ".arkindex.yml: no `workers` list found (write the version 2 format, with a `workers` list, "
            "or move each worker to its own arkindex/<slug>.yml)"
        ),
        beside={},
    ),
    BadInput(
        "legacy pattern outside the commit",
        {
            ".arkindex.yml": f"version: 2\nworkers:\n{LEGACY_INLINE}  - ../*.yml\n",
            "docs/inline.md": "Inline.\n",
        },
        Documented(
            ".arkindex.yml: the pattern '<pattern>' points outside the repository "
            "(give a pattern relative to the repository's root)",
            {"<pattern>": "../*.yml"},
        ),
        beside={},
    ),
    BadInput(
        "legacy description outside the commit",
        {
            ".arkindex.yml": f"version: 2\nworkers:\n{LEGACY_INLINE}"
            "  - slug: thief\n    name: Thief\n    type: classifier\n    description: /etc/hostname\n",
            "docs/inline.md": "Inline.\n",
        },
        Documented(
            ".arkindex.yml: worker <slug>: the description file '<path>' is outside the repository "
            "(give a path relative to the repository's root)",
            {"<slug>": "thief", "<path>": "/etc/hostname"},
        ),
        beside={},
    ),
    BadInput(
        "legacy patterns that match no file",
        {".arkindex.yml": "version: 2\nworkers:\n  - nowhere/*.yml\n"},
        Documented(
            ".arkindex.yml: its `workers` list declares no worker: its patterns match no file of the commit "
            "(fix the patterns, or add the worker files they should name)"
        ),
        beside={},
    ),
    BadInput(
        "unknown image placeholder",
        {"arkindex/hello.yml": worker_yaml("hello", "Hello")},
        Documented(
            "WORKER_IMAGE_TEMPLATE 'registry/{slug}:{commit}' uses unknown placeholder(s) {commit} "
            "(use only {slug}, {hash}, {short_hash} and {ref}, without format specs; "
            "write {{ and }} for literal braces)"
        ),
        env={"WORKER_IMAGE_TEMPLATE": "registry/{slug}:{commit}"},
    ),
]


def documented_messages() -> list[str]:
    """The error lines the bad-input cases check against the tool's output, as the README's per-revision
    table shows them (tests/test_readme_tables.py checks that every row of the table is one of them)."""
    return [case.message.text for case in BAD_INPUTS]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.id for case in BAD_INPUTS])
def test_bad_input_exits_2_and_creates_nothing(case, emulator, tmp_path, repo, git_root, git_server):
    commit = repo.commit("Bad input", {**case.beside, **case.files}, symlinks=case.symlinks)
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"), **case.env)
    task = revision_task(ponos, commit)

    result = ponos.run_child(task)

    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result)
    report = report_of(ponos, task)
    if case.env:  # a bad setting: its one line, whole
        assert len(lines) == 1, result.output
        (line,) = lines
    else:  # a bad file: its line, then the closing line saying nothing was registered and what to do
        prefix = f"revision {commit[:10]}: "
        assert len(lines) == 2 and lines[0].startswith(prefix), result.output
        assert Documented(CLOSING, {"<hash>": commit[:10], "<n>": "1"}).match(lines[1]) is not None, lines[1]
        line = lines[0].removeprefix(prefix)
        assert [f"{e['file']}: {e['message']}" for e in report["errors"]] == [line]
    assert case.message.match(line) is not None, f"{line!r} is not the documented {case.message.text!r}"
    assert len(report["errors"]) == 1
    assert operations(emulator, "CreateWorker") == []
    assert emulator.workers() == [] and emulator.versions() == []


def test_every_bad_file_of_a_commit_is_listed_in_one_run(emulator, tmp_path, repo, git_root, git_server):
    """One commit with a bad file of each kind beside a valid worker: one run lists them all, in the log
    and in import-report.json, registers nothing (no CreateWorker reaches Arkindex) and exits 2."""
    commit = repo.commit(
        "Many bad files",
        {
            "arkindex/a-good.yml": worker_yaml("good", "Good"),
            "arkindex/b-big.yml": worker_yaml("big", "Big") + "# " + "x" * MAX_FILE_SIZE + "\n",
            "arkindex/c-bomb.yml": alias_bomb(),
            "arkindex/d-latin1.yml": worker_yaml("latin", "Caf\xe9").encode("latin-1"),
            "arkindex/e-syntax.yml": "slug: good\ndisplay_name: [unclosed\n",
            "arkindex/f-invalid.yml": worker_yaml("invalid", "Invalid").replace("classifier", ""),
            "arkindex/g-same.yml": worker_yaml("good", "Good again"),
            "shared/worker.yml": worker_yaml("linked", "Linked"),
        },
        symlinks={"arkindex/h-link.yml": "../shared/worker.yml"},
    )
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"))
    task = revision_task(ponos, commit)

    result = ponos.run_child(task)

    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    bad = ["b-big", "c-bomb", "d-latin1", "e-syntax", "f-invalid", "g-same", "h-link"]
    files = [f"arkindex/{name}.yml" for name in bad]
    report = report_of(ponos, task)
    assert [error["file"] for error in report["errors"]] == files
    lines = error_lines(result)
    assert lines[:-1] == [f"revision {commit[:10]}: {e['file']}: {e['message']}" for e in report["errors"]]
    needles = [
        "over the 1 MiB limit",
        "(an alias bomb)",
        "not valid UTF-8",
        "invalid YAML at line 3",
        "type: 'None' is not a str",
        "'good' is declared by arkindex/a-good.yml too",
        "is a symbolic link",
    ]
    for line, needle in zip(lines[:-1], needles, strict=True):
        assert needle in line, line
    assert Documented(CLOSING, {"<hash>": commit[:10], "<n>": "7"}).match(lines[-1]) is not None, lines[-1]
    assert report["workers"] == []
    assert operations(emulator, "CreateWorker") == []
    assert emulator.workers() == [] and emulator.versions() == []


def test_legacy_file_pointing_outside_the_commit_registers_nothing(
    emulator, tmp_path, repo, git_root, git_server
):
    """A legacy `.arkindex.yml` with a valid inline worker, a pattern and a description outside the
    repository: both are listed, the valid worker is not registered, exit 2."""
    legacy = (
        "version: 2\n"
        "workers:\n"
        "  - slug: inline\n    name: Inline\n    type: classifier\n    description: docs/inline.md\n"
        "  - slug: thief\n    name: Thief\n    type: classifier\n    description: /etc/hostname\n"
        "  - ../../etc/*.yml\n"
    )
    commit = repo.commit("Legacy", {".arkindex.yml": legacy, "docs/inline.md": "Inline.\n"})
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"))
    task = revision_task(ponos, commit)

    result = ponos.run_child(task)

    assert result.code == 2, result.output
    short = commit[:10]
    assert error_lines(result) == [
        f"revision {short}: .arkindex.yml: the pattern '../../etc/*.yml' points outside the repository "
        "(give a pattern relative to the repository's root)",
        f"revision {short}: .arkindex.yml: worker thief: the description file '/etc/hostname' is outside "
        "the repository (give a path relative to the repository's root)",
        f"revision {short}: nothing was registered: 1 configuration file(s) above are invalid "
        "(fix the files named above and push again)",
    ], result.output
    assert operations(emulator, "CreateWorker") == []
    report = report_of(ponos, task)
    assert (report["configuration"], report["workers"], len(report["errors"])) == ("legacy", [], 2)


def test_revision_missing_from_the_server(emulator, tmp_path, repo, git_root, git_server):
    """A commit removed by a force push since the trigger ran: exit 2, the commit named, nothing created."""
    repo.commit("Kept", {"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    repo.publish(git_root / "workers.git")
    ponos = process_for(emulator, tmp_path, git_server.url("workers.git"))
    gone = "0123456789abcdef0123456789abcdef01234567"
    task = revision_task(ponos, gone)

    result = ponos.run_child(task)

    assert result.code == 2, result.output
    assert any(gone in line and "REPOSITORY_REVISION" in line for line in result.output.splitlines())
    assert operations(emulator, "CreateWorker") == []
    assert report_of(ponos, task)["errors"]


def test_host_without_fetch_by_id_or_partial_clone(emulator, tmp_path, repo, git_root):
    """An older host (protocol v0, no filters, only advertised objects): the same workers and versions."""
    commits = [
        repo.commit("Add hello", {"arkindex/hello.yml": worker_yaml("hello", "Hello")}),
        repo.commit("Add goodbye", {"arkindex/goodbye.yml": worker_yaml("goodbye", "Goodbye")}),
    ]
    repo.publish(git_root / "workers.git")
    with GitHTTPServer(git_root, strict=True) as strict:
        ponos = process_for(emulator, tmp_path, strict.url("workers.git"))
        runs = trigger_and_run(ponos, before=None)
        ((_task, result),) = runs
        assert result.code == 0, result.output  # the tip is advertised: fetched by id
        # An older commit is not advertised: it comes through its ref's history instead.
        older = ponos.run_child(revision_task(ponos, commits[0]))
        assert older.code == 0, older.output
        assert "refused to send it by id" in older.output
    workers, versions = state(emulator)
    assert sorted(w["slug"] for w in workers) == ["goodbye", "hello"]
    assert sorted(v["revision_url"].rsplit("/", 1)[-1] for v in versions) == sorted(
        [commits[0], commits[1], commits[1]]
    )


def test_blobs_over_the_limit_are_sized_not_read(repo: RepoBuilder, tmp_path: Path) -> None:
    """A huge configuration file is refused from its size alone: its content is never held."""
    big = b"x" * (8 * MAX_FILE_SIZE)
    repo.commit(
        "Files",
        {"arkindex/big.yml": big, "arkindex/small.yml": "a: 1\n", "arkindex/edge.yml": b"y" * MAX_FILE_SIZE},
    )
    bare = repo.publish(tmp_path / "r.git")
    oids = {
        path: repo.git("rev-parse", f"HEAD:{path}").strip()
        for path in ("arkindex/small.yml", "arkindex/big.yml", "arkindex/edge.yml")
    }
    with GitEnv(allow_local=True) as env:
        blobs = list(Repo(bare, env).read_blobs(list(oids.values()), max_size=MAX_FILE_SIZE))
    assert blobs == [
        (oids["arkindex/small.yml"], b"a: 1\n"),
        (oids["arkindex/big.yml"], len(big)),
        (oids["arkindex/edge.yml"], b"y" * MAX_FILE_SIZE),
    ]


def test_blob_reader_reports_git_failing_midway(tmp_path: Path) -> None:
    with GitEnv() as env, pytest.raises(GitError, match=r"reading files failed: .*not a git repository"):
        list(Repo(tmp_path / "missing.git", env).read_blobs(["1" * 40]))


def test_concurrent_registration_reports_as_one_after_the_other(
    tmp_path: Path, repo: RepoBuilder, git_root: Path, git_server: GitHTTPServer
) -> None:
    """WORKER_CONCURRENCY registers several workers at once; the report and Arkindex end the same as
    one worker after the other (the report in the files' order)."""
    repo.commit(
        "Workers",
        {f"arkindex/w{i:02d}.yml": worker_yaml(f"w{i:02d}", f"W {i}", f"Worker {i}") for i in range(12)},
    )
    repo.publish(git_root / "workers.git")
    commit = repo.head()
    url = git_server.url("workers.git")
    results = {}
    for concurrency in ("1", "8"):
        with Emulator() as emulator:
            ponos = process_for(emulator, tmp_path, url, name=f"data{concurrency}")
            task = revision_task(ponos, commit)
            result = ponos.run_child(task, {"WORKER_CONCURRENCY": concurrency})
            assert result.code == 0, result.output
            report = report_of(ponos, task)
            results[concurrency] = (
                [(w["slug"], w["file"], w["version"], w["updated"]) for w in report["workers"]],
                sorted((w["slug"], w["name"], w["description"]) for w in emulator.workers()),
                sorted(v["revision_url"] for v in emulator.versions()),
            )
    assert results["1"] == results["8"]
    assert [entry[0] for entry in results["8"][0]] == [f"w{i:02d}" for i in range(12)]
