"""`arkindex-git-import demo`: the whole chain on one machine, offline.

A sample repository served over smart HTTP on 127.0.0.1 (or the user's repository), the embedded
Arkindex emulator, a repository process with its trigger task (two when the whole history is
imported: see _import_start); the trigger runs as Ponos would run it (a child process with the Ponos
environment), then every task it created runs the same way.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from git_import.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from git_import.git.repo import GitEnv, Repo
from git_import.local.emulator import Emulator
from git_import.local.gitserver import GitHTTPServer
from git_import.local.sample import make_sample
from git_import.rules.plan import clip
from git_import.rules.urls import NULL_SHA

logger = logging.getLogger(__name__)

DEMO_IMAGE = "arkindex-git-import:demo"


def _run_task(task: dict, process_id: str, api_url: str, data: Path, label: str) -> int:
    """Run one task's command in a child process with the environment a Ponos agent gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PONOS_", "ARKINDEX_", "REPOSITORY_"))}
    env.update(task["env"])
    env.update(
        {
            "PONOS_TASK": task["id"],
            "PONOS_PROCESS": process_id,
            "PONOS_DATA": str(data),
            "ARKINDEX_API_URL": api_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    args = (task.get("command") or "arkindex-git-import trigger").split()
    if args and args[0] == "arkindex-git-import":
        args = [sys.executable, "-m", "git_import", *args[1:]]
    print(f"\n── task {label} ({task['slug']}) ──", flush=True)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"   {line.rstrip()}", flush=True)
    return proc.wait()


def _recent_history(url: str, ref: str | None, revisions: int, allow_local: bool) -> tuple[str, list[str]]:
    """The full ref, and its newest `revisions` + 1 first-parent commits, newest first (fewer when
    the history is shorter: then they are the whole history)."""
    with (
        GitEnv(allow_local=allow_local, token=os.environ.get("REPOSITORY_TOKEN")) as git_env,
        tempfile.TemporaryDirectory() as tmp,
    ):
        repo = Repo.init(Path(tmp) / "r.git", url, git_env)
        refs, head = repo.ls_remote(*([f"refs/heads/{ref}", f"refs/tags/{ref}"] if ref else ["HEAD"]))
        full = head if not ref else next((r for r in refs), None)
        if not full:
            raise ConfigError(f"--ref {ref!r} not found in {url}" if ref else f"{url} has no default branch")
        repo.fetch(f"+{full}:refs/demo", filter="tree:0", depth=revisions + 1, what="reading the history")
        return full, [c.hash for c in repo.first_parent_log("refs/demo", limit=revisions + 1)]


def _import_start(newest_first: list[str], revisions: int) -> tuple[str | None, str | None]:
    """(before, first): how the trigger runs to import the newest `revisions` commits of
    `newest_first` (the newest `revisions` + 1 or, if fewer, the whole history), as if just pushed.

    A push imports the first-parent commits after its `before`. The root commit has no commit
    before it, and a push without `before` (a new branch) imports its tip alone; so when `revisions`
    reaches the root, the history is imported as if the branch had been created with its first
    commit (`first`, a push of its own), and the rest pushed after it (`before`: the root)."""
    if len(newest_first) > revisions:
        return newest_first[revisions], None
    if len(newest_first) == 1:
        return None, None  # the root is the tip: a new branch imports it
    root = newest_first[-1]
    return root, root


@dataclass
class _Source:
    """The repository the demo imports, and where the import starts."""

    url: str
    full_ref: str | None
    before: str | None  # as if the commits after it had just been pushed (None: a new branch, the tip alone)
    first: str | None = None  # the root commit, pushed alone as a new branch before the rest
    allow_local: bool = False
    server: GitHTTPServer | None = None  # serving the sample repository, stopped with the demo


def _start_of(newest_first: list[str], revisions: int) -> tuple[str | None, str | None]:
    """:func:`_import_start`, telling the user when the history holds fewer commits than asked for."""
    held = len(newest_first)
    if held < revisions:
        print(f"{revisions} revisions asked, the history holds {held}: importing all {held}")
    return _import_start(newest_first, revisions)


def run_demo(*, repository_url: str | None = None, ref: str | None = None, revisions: int = 3) -> int:
    """Run the whole chain on one machine; returns the exit status (0 when every task succeeded)."""
    if revisions < 1:
        raise ConfigError(f"--revisions {revisions} imports nothing", hint="give a number of at least 1")
    with tempfile.TemporaryDirectory(prefix="git-import-demo-") as tmp_dir:
        tmp = Path(tmp_dir)
        if repository_url is None:
            source = _serve_sample(tmp, revisions)
        else:
            source = _user_source(repository_url, ref, revisions)
        emulator = Emulator().start()
        try:
            return _run_process(emulator, source, revisions, tmp / "data")
        finally:
            emulator.stop()
            if source.server is not None:
                source.server.stop()


def _serve_sample(tmp: Path, revisions: int) -> _Source:
    """The sample repository, served over smart HTTP; its last `revisions` commits are imported."""
    root = tmp / "git"
    root.mkdir()
    commits = make_sample(tmp / "work", root / "sample-workers.git")
    server = GitHTTPServer(root).start()
    url = server.url("sample-workers.git")
    print(f"Sample repository with {len(commits)} commits served at {url}")
    before, first = _start_of(commits[::-1][: revisions + 1], revisions)
    return _Source(url, "refs/heads/main", before, first, server=server)


def _user_source(repository_url: str, ref: str | None, revisions: int) -> _Source:
    """The user's repository (a URL, or a path on this machine); its last `revisions` commits are imported."""
    url = repository_url
    allow_local = ("://" not in url and Path(url).exists()) or url.startswith("file://")
    if allow_local and not url.startswith("file://"):
        url = str(Path(url).resolve())
    full_ref, newest_first = _recent_history(url, ref, revisions, allow_local)
    before, first = _start_of(newest_first, revisions)
    return _Source(url, full_ref, before, first, allow_local=allow_local)


def _process_env(source: _Source, revisions: int) -> dict[str, str]:
    """The environment of the repository process, as an Arkindex administrator would configure it."""
    env = {
        "REPOSITORY_URL": source.url,
        "REPOSITORY_REF": source.full_ref or "",
        "IMPORT_IMAGE": DEMO_IMAGE,
        "WORKER_IMAGE_TEMPLATE": "registry.example.com/workers/{slug}:{short_hash}",
        "MAX_REVISIONS": str(max(revisions, 1)),
        "RETRY_BASE_DELAY": "0.2",
    }
    if source.before:
        env["REPOSITORY_BEFORE"] = source.before
    if source.allow_local:
        env["REPOSITORY_ALLOW_LOCAL"] = "1"
    if os.environ.get("REPOSITORY_TOKEN"):
        env["REPOSITORY_TOKEN"] = os.environ["REPOSITORY_TOKEN"]
    return env


def _triggers(emulator: Emulator, process_id: str, first: str | None) -> list[dict]:
    """The trigger tasks, in the order they run: the push's; with the whole history, before it the one
    of the push that created the branch with its first commit."""

    def trigger(slug: str, env: dict[str, str] | None = None) -> dict:
        command = "arkindex-git-import trigger"
        return emulator.create_task(process_id, slug=slug, image=DEMO_IMAGE, command=command, env=env)

    if first is None:
        return [trigger("import")]
    # A push that creates a branch: `before` is forty zeros, `after` the pushed commit.
    creation = trigger("import-new-branch", {"REPOSITORY_BEFORE": NULL_SHA, "REPOSITORY_AFTER": first})
    return [creation, trigger("import")]


def _run_process(emulator: Emulator, source: _Source, revisions: int, data: Path) -> int:
    """Create the process and its trigger task(s), run them, then every task they created, oldest
    revision first; print the summary and return the exit status."""
    process = emulator.create_process(name="Demo repository import", env=_process_env(source, revisions))
    process_id = process["id"]
    triggers = _triggers(emulator, process_id, source.first)
    print(f"Arkindex emulator at {emulator.url}, process {process_id}")
    if source.first:
        print(
            f"The first commit {source.first[:10]} has none before it: pushed first, as a new branch, then the rest"
        )
    failures = 0
    planned: list[dict] = []
    for index, trigger in enumerate(triggers, 1):
        label = "trigger" if len(triggers) == 1 else f"trigger {index}/{len(triggers)}"
        failures += int(not _run_and_record(emulator, trigger, process_id, data, label))
        planned += _read_plan(data / trigger["id"])
    trigger_ids = {trigger["id"] for trigger in triggers}
    children = _created_tasks(emulator, process_id, trigger_ids, planned)
    for index, task in enumerate(children, 1):
        emulator.set_task_state(task["id"], "running")
        failures += int(not _run_and_record(emulator, task, process_id, data, f"{index}/{len(children)}"))
    print(_summary(emulator, process_id, trigger_ids, planned))
    return EXIT_OK if failures == 0 else EXIT_FAILURE


def _run_and_record(emulator: Emulator, task: dict, process_id: str, data: Path, label: str) -> bool:
    """Run the task, then set its state from its exit status as a Ponos agent would; True on success."""
    code = _run_task(task, process_id, emulator.url, data / task["id"], label)
    emulator.set_task_state(task["id"], "completed" if code == 0 else "failed")
    return code == 0


def _created_tasks(
    emulator: Emulator, process_id: str, trigger_ids: set[str], revisions: list[dict]
) -> list[dict]:
    """The tasks the triggers created, in the order of their plans."""
    return _in_plan_order([t for t in emulator.tasks(process_id) if t["id"] not in trigger_ids], revisions)


def _read_plan(trigger_data: Path) -> list[dict]:
    """The revisions of the trigger's plan (oldest first), or [] when it wrote none."""
    try:
        plan = json.loads((trigger_data / "current" / "import-plan.json").read_text())
        return [item for item in plan["revisions"] if isinstance(item, dict) and "task" in item]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _in_plan_order(tasks: list[dict], revisions: list[dict]) -> list[dict]:
    """The tasks, oldest revision first, as the trigger's plan lists them.

    The trigger creates tasks concurrently, so the server's creation order is not the history's; run
    out of order, an older revision would register its worker description last.
    """
    rank = {item["task"]["slug"]: index for index, item in enumerate(revisions)}
    return sorted(tasks, key=lambda task: rank.get(task["slug"], len(rank)))


def _summary(emulator: Emulator, process_id: str, trigger_ids: set[str], revisions: list[dict]) -> str:
    """What the run left on the emulator: a line a task, then the workers and their versions."""
    plan = {item["task"]["slug"]: item for item in revisions}
    tasks = _created_tasks(emulator, process_id, trigger_ids, revisions)
    by = "the trigger" if len(trigger_ids) == 1 else f"the {len(trigger_ids)} triggers"
    lines = ["", "═" * 72, "Summary", "═" * 72, f"Tasks created by {by}: {len(tasks)} (one per revision)"]
    for task in tasks:
        summary = str(plan.get(task["slug"], {}).get("summary", ""))
        commit = task["env"].get("REPOSITORY_REVISION", task["slug"])[:10]
        # The summary is cut to keep one line a task; `…` says it was.
        lines.append(f"  {commit}  {clip(summary, 40):<40}  task {clip(task['slug'], 18)}  {task['state']}")
    workers = emulator.workers()
    versions = emulator.versions()
    lines.append(f"Workers registered: {len(workers)}")
    for worker in workers:
        description = _first_line(worker.get("description") or "")
        lines.append(f"  {worker['slug']} ({worker['type']}): {worker['name']} — {description}")
        for version in (v for v in versions if v["worker_id"] == worker["id"]):
            commit = version["revision_url"].rsplit("/", 1)[-1][:10]
            where = f"branch {version['branch']}" if version.get("branch") else f"tag {version.get('tag')}"
            lines.append(
                f"    version {version['id']}  commit {commit}  {where}  image {version['docker_image_iid']}"
            )
    lines.append(f"Worker versions: {len(versions)}")
    return "\n".join(lines)


def _first_line(markdown: str, width: int = 60) -> str:
    """The first line of a worker's (Markdown) description, for a one-line summary: a heading's `#`
    marks dropped, `…` at the end when lines were left out or the line was cut."""
    lines = [line.strip() for line in markdown.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0].lstrip("#").strip() or lines[0]
    if len(lines) > 1:
        first += " …"
    return clip(first, width)
