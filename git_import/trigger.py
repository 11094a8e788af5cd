"""The trigger: clone, choose revisions, fan out one import task per revision with `process_id`."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from git_import import logs
from git_import.early import CLONE_FILTER, EarlyClone, clone_depth
from git_import.errors import EXIT_FAILURE, EXIT_OK, ConfigError, FatalError
from git_import.git.repo import Commit, GitEnv, GitError, Repo, git_env_for
from git_import.logs import Timings
from git_import.retry import with_retries
from git_import.rules import selection as sel
from git_import.rules.plan import CREATED, EXISTING, FAILED, NEW, Plan, PlanItem, build_plan
from git_import.rules.urls import NULL_SHA, check_pathspecs, check_ref, check_repository_url, clone_branch
from git_import.settings import Settings

if TYPE_CHECKING:  # the API layer (requests, arkindex-client) is imported while the clone runs
    from git_import.arkindex import APIConfigError, ArkindexAPI

logger = logging.getLogger(__name__)

PLAN_FILE = "import-plan.json"
TARGET_REF = "refs/import/target"


@dataclass
class Target:
    ref: str | None  # full ref, or None when only a commit was given
    commit: str


def _resolve_ref(repo: Repo, ref: str) -> tuple[str | None, str | None]:
    """(full ref, its commit or tag object) on the remote for a full ref; (None, None) when it does not exist."""
    refs, _ = repo.ls_remote(ref)
    return (ref, refs[ref]) if ref in refs else (None, None)


def _missing_ref(ref: str | None, after: str | None) -> None:
    """The ref is not on the server: fine when a pushed commit is given, else a setting error."""
    if after is not None:
        return
    if ref is None:
        raise ConfigError(
            "the repository is empty: it has no branch to import",
            hint="push a commit to the repository, or check REPOSITORY_URL",
        )
    raise ConfigError(
        f"REPOSITORY_REF {ref!r} does not exist in the repository",
        hint="give an existing branch or tag, or leave REPOSITORY_REF empty for the default branch",
    )


def clone(
    settings: Settings,
    git_env: GitEnv,
    workdir: Path,
    url: str,
    ref: str | None,
    paths: list[str],
    early: EarlyClone | None = None,
) -> tuple[Repo, Target]:
    """Fetch what selection needs, without checking out files: commits only (trees too with a path filter).

    Without `before` (a new branch) only the target commit is needed: depth 1. The first try takes
    the `early` clone when it is this very clone."""
    need_history = settings.before is not None
    filter = CLONE_FILTER
    after = settings.repository_after
    repo_path = workdir / "repo.git"
    pending = [early] if early is not None else []

    def start() -> tuple[Repo, str | None, str | None, str | None]:
        """Clone or fetch the ref: (repo, full ref, its commit, the local ref holding its history)."""
        depth = clone_depth(settings.before)
        branch = clone_branch(ref)
        taken = pending.pop() if pending else None
        if taken is not None and branch is False:
            taken.close()  # not a clone this path makes
        if branch is not False:
            # The common case (default branch, a branch, a short tag name): one git process.
            try:
                repo = (taken and taken.take(repo_path, url, branch, depth, git_env)) or Repo.clone(
                    repo_path, url, git_env, branch=branch, filter=filter, depth=depth
                )
            except GitError as exc:
                if exc.transient or "not found in upstream" not in exc.message:
                    raise
                _missing_ref(ref, after)
                shutil.rmtree(repo_path, ignore_errors=True)
                return Repo.init(repo_path, url, git_env), None, None, None
            refs = repo.local_refs()
            if not refs:
                _missing_ref(ref, after)
                return repo, None, None, None
            full_ref, tip = refs[0]
            return repo, full_ref, tip, full_ref
        assert ref is not None
        repo = Repo.init(repo_path, url, git_env)
        full_ref, tip = _resolve_ref(repo, ref)
        if full_ref is None:
            _missing_ref(ref, after)
            return repo, None, None, None
        if after is None or tip == after or need_history:
            repo.fetch(f"+{full_ref}:{TARGET_REF}", filter=filter, depth=depth, what=f"fetching {full_ref}")
            return repo, full_ref, repo.rev_parse_commit(TARGET_REF), TARGET_REF
        return repo, full_ref, None, None

    def attempt() -> tuple[Repo, Target]:
        repo, full_ref, tip, local_ref = start()
        depth = clone_depth(settings.before)
        commit = after or tip
        if after is not None and after != tip and after not in _ancestors(repo, local_ref):
            if ref is None and full_ref is not None:
                # The ref was not given: the default branch was a guess, and `after` is not on it
                # (or cannot be told to be). Its tasks would carry a wrong branch: carry none.
                logger.warning(
                    "REPOSITORY_AFTER %s is not known to be on the default branch %s: its tasks carry no "
                    "ref; set REPOSITORY_REF to the pushed branch or tag",
                    after,
                    full_ref,
                )
                full_ref = None
            try:
                repo.fetch(after, filter=filter, depth=depth, what=f"fetching commit {after}")
            except GitError as exc:
                if exc.transient:
                    raise
                raise ConfigError(
                    f"REPOSITORY_AFTER {after} does not exist in the repository",
                    hint="give the hash of a pushed commit, or leave REPOSITORY_AFTER empty to import the ref's tip",
                ) from None
        assert commit is not None
        return repo, Target(full_ref, commit)

    return with_retries(
        attempt,
        attempts=settings.retry_attempts,
        base_delay=settings.retry_base_delay,
        what="cloning the repository",
        cleanup=lambda: shutil.rmtree(repo_path, ignore_errors=True),
    )


def _ancestors(repo: Repo, rev: str | None) -> set[str]:
    """Every commit reachable from `rev`, read from commits already fetched (never a lazy fetch)."""
    if rev is None:
        return set()
    return repo.reachable_commits(rev)


def select(
    settings: Settings,
    repo: Repo,
    target: Target,
    paths: list[str],
) -> sel.Selection:
    """Choose the revisions to import (first-parent commits after `before`, or the target alone)."""

    def read_tip() -> Commit:
        return repo.first_parent_log(target.commit, limit=1)[0]

    before = settings.before
    if before is None:
        return sel.select_target(read_tip(), sel.NEW_BRANCH)
    if before == target.commit:
        return sel.Selection(mode=sel.PUSH, chosen=[])
    # The common push: `before` is on the target's first-parent line, read only down to it. Otherwise
    # (a merge brought it in, or it is not in the history at all) the whole history is listed.
    pushed = repo.first_parent_until(target.commit, before)
    if pushed is not None or before in _ancestors(repo, target.commit):
        if paths:
            _fetch_range_trees(repo, target.commit, before)
            pushed = repo.first_parent_log(target.commit, exclude=before, paths=paths)
        elif pushed is None:
            pushed = repo.first_parent_log(target.commit, exclude=before)
        return sel.select_push(pushed, settings.max_revisions)
    # `before` is not in the target's history: a rewritten history, or a wrong setting.
    if _reachable_from_any_branch(repo, before, settings):
        raise ConfigError(
            f"REPOSITORY_BEFORE {before} is not an ancestor of the target {target.commit}",
            hint="give the commit the branch pointed to before the push, or leave REPOSITORY_BEFORE empty "
            "to import the target alone",
        )
    warning = (
        f"REPOSITORY_BEFORE {before} is no longer in the repository (history rewritten by a force push?): "
        "importing the target alone"
    )
    logger.warning(warning)
    return sel.select_target(read_tip(), sel.REWRITTEN, warning)


def _fetch_range_trees(repo: Repo, target: str, before: str) -> None:
    """Fetch the trees (no blobs) of the pushed commits and of `before`, in one request.

    A path filter compares each commit's tree with its first parent's; the history was cloned
    without trees, and a whole-history `blob:none` clone would fetch every tree ever written."""
    trees = repo.range_trees(target, before)
    try:
        repo.fetch_objects(list(dict.fromkeys(trees)), what="fetching the trees of the pushed commits")
    except GitError as exc:
        # Still correct without it: git fetches each missing tree on demand, only slower.
        logger.warning(
            "could not fetch the pushed commits' trees at once (%s); fetching them one by one", exc.message
        )


def _reachable_from_any_branch(repo: Repo, commit: str, settings: Settings) -> bool:
    """Whether a commit is reachable from any branch or tag of the server (commits only are fetched)."""
    try:
        repo.fetch(
            "+refs/heads/*:refs/import/heads/*",
            "+refs/tags/*:refs/import/tags/*",
            filter="tree:0",
            what="fetching every branch to look for REPOSITORY_BEFORE",
        )
    except GitError as exc:
        logger.warning("could not fetch the other branches: %s", exc.message)
        return False
    return commit in repo.reachable_commits()


def _fan_out(api: ArkindexAPI, plan: Plan, bodies: dict[str, dict[str, Any]], concurrency: int) -> None:
    """Create the planned tasks with a bounded pool over one keep-alive session, logging steady progress.

    A rejected token or permission (401/403, exit 2) stops the fan-out at once: no new request is sent,
    and the error is raised once the pool is idle (revisions not tried stay new in the plan)."""
    from git_import.arkindex import APIConfigError

    todo = [item for item in plan.items if item.state == NEW]
    total = len(todo)
    if not total:
        return
    done = 0  # tasks tried, whatever the outcome
    there = 0  # tasks that now exist: created, or already there
    failed = 0
    lock = threading.Lock()
    stop = threading.Event()
    config_errors: list[APIConfigError] = []
    last_report = [time.monotonic()]

    def progress() -> str:
        line = f"created {there}/{total}"
        return f"{line} ({failed} failed)" if failed else line

    def create(item: PlanItem) -> None:
        nonlocal done, there, failed
        if stop.is_set():
            return
        ok = False
        try:
            task, created = api.create_task(bodies[item.slug])
            ok = True
            if created:
                assert task is not None
                item.state, item.task_id = CREATED, str(task["id"])
            else:
                item.state, item.task_id = EXISTING, str(task["id"]) if task else None
                logger.info("task %s already exists (a retry of ours, or another run): skipped", item.slug)
        except APIConfigError as exc:
            # The token or its rights are wrong: every other request would fail the same way.
            stop.set()
            item.state, item.error = FAILED, exc.message
            with lock:
                config_errors.append(exc)
        except FatalError as exc:
            item.state, item.error = FAILED, exc.message
            logger.error("could not create task %s for revision %s: %s", item.slug, item.revision.hash, exc)
        with lock:
            done += 1
            if ok:
                there += 1
            else:
                failed += 1
            now = time.monotonic()
            if now - last_report[0] >= logs.PROGRESS_INTERVAL and done < total and not stop.is_set():
                last_report[0] = now
                logger.info("%s", progress())

    # The main thread sleeps until the pool is done: waiting on each future in turn would wake it at
    # every answer, just when the pool's threads need the interpreter. After a stop, the requests not
    # sent yet return at once.
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fan-out") as pool:
        futures = [pool.submit(create, item) for item in todo]
    for future in futures:
        future.result()  # re-raise an unexpected error of a pool thread
    logger.info("%s", progress())
    if config_errors:
        raise config_errors[0]


def task_body(
    settings: Settings, process_id: str, parent: str, item: PlanItem, url: str, ref: str | None, newest: bool
) -> dict[str, Any]:
    """The CreateTask body of one revision. The process environment reaches the child through the
    server (docs/arkindex-api.md, the environment): no secret is ever copied here. Only the newest revision's task updates the
    workers' attributes: sibling tasks run in any order, and an older one must not win."""
    env = {
        "REPOSITORY_REVISION": item.revision.hash,
        "REPOSITORY_URL": url,
        "WORKER_UPDATE": "1" if newest else "0",
    }
    if ref:
        env["REPOSITORY_REF"] = ref
    return {
        "process_id": process_id,
        "slug": item.slug,
        "parents": [parent],
        "image": settings.import_image,
        "command": f"arkindex-git-import revision {item.revision.hash}",
        "env": env,
    }


def write_plan(settings: Settings, plan: Plan) -> Path:
    folder = settings.artifacts_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLAN_FILE
    path.write_text(json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n")
    return path


def run_trigger(
    settings: Settings,
    *,
    dry_run: bool = False,
    fmt: str = "text",
    out: TextIO | None = None,
    early: EarlyClone | None = None,
) -> int:
    """Run the trigger; returns the exit status (0 when every planned task exists at the end).

    `early`: a clone started before the settings were loaded, used if it is the clone they ask for."""
    out = out or sys.stdout
    timings = Timings()
    url = check_repository_url(settings.require_repository(), allow_local=settings.repository_allow_local)
    paths = check_pathspecs(settings.paths)
    ref = check_ref(settings.repository_ref) if settings.repository_ref else None
    if settings.repository_after == NULL_SHA:
        logger.info("the push deleted %s: nothing to import", ref or "the ref")
        return EXIT_OK

    process_id = task_id = None
    if not dry_run:
        process_id, task_id = settings.require_process()

    def read_process() -> tuple[ArkindexAPI | None, dict[str, str]]:
        from git_import.arkindex import ArkindexAPI

        with timings.phase("process"):
            if not dry_run:
                api = ArkindexAPI(settings, pool_size=settings.fan_out_concurrency)
                process = api.retrieve_process(process_id)
                existing = api.existing_tasks(process, task_id)
                logger.info("process %s holds %d task(s) in its current run", process_id, len(existing))
                return api, existing
            if settings.ponos_process and settings.arkindex_api_url:
                try:
                    dry_api = ArkindexAPI(settings)
                    return None, dry_api.existing_tasks(
                        dry_api.retrieve_process(settings.ponos_process), settings.ponos_task
                    )
                except FatalError as exc:
                    logger.warning(
                        "dry run: could not read the process' tasks (%s); all revisions shown as new", exc
                    )
            return None, {}

    with git_env_for(settings) as git_env, tempfile.TemporaryDirectory(prefix="git-import-") as tmp:

        def clone_and_select() -> tuple[Target, sel.Selection]:
            with timings.phase("clone"):
                logger.info("cloning %s (%s)", url, ref or "default branch")
                repo, target = clone(settings, git_env, Path(tmp), url, ref, paths, early)
            with timings.phase("select"):
                selection = select(settings, repo, target, paths)
            return target, selection

        # The clone runs while the process is read: both wait on the network.
        api_error: Exception | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clone") as pool:
            git_future = pool.submit(clone_and_select)
            try:
                try:
                    api, existing = read_process()
                except Exception as exc:
                    api_error = exc
                git_error = git_future.exception()
            except BaseException:
                # Ctrl-C: git is out of the terminal's reach; stop it before the pool waits.
                if early is not None:
                    early.close()
                git_env.stop()
                raise
    # A wrong setting or token is reported first; then a git failure; then any other API failure.
    if isinstance(api_error, ConfigError):
        raise api_error
    if git_error is not None:
        raise git_error
    if api_error is not None:
        raise api_error
    target, selection = git_future.result()

    plan = build_plan(
        repository_url=url,
        ref=target.ref,
        target=target.commit,
        before=settings.before,
        paths=paths,
        selection=selection,
        existing=existing,
    )
    if selection.left_out:
        logger.warning(
            "%d revision(s) left out by MAX_REVISIONS=%d: the oldest, from %s to %s; raise MAX_REVISIONS to import them",
            len(selection.left_out),
            settings.max_revisions,
            selection.left_out[0].hash[:10],
            selection.left_out[-1].hash[:10],
        )
    logger.info(
        "%d revision(s) chosen (%s) on %s at %s",
        len(plan.items),
        selection.mode,
        target.ref or "commit",
        target.commit,
    )
    for item in plan.items:
        if item.state == EXISTING:
            logger.info("revision %s: task %s already exists, skipped", item.revision.hash[:10], item.slug)

    if dry_run:
        if fmt == "json":
            out.write(json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n")
        else:
            width = shutil.get_terminal_size().columns if out.isatty() else None  # a pipe gets it whole
            out.write(plan.render_table(width) + "\n")
        return EXIT_OK

    assert api is not None and process_id is not None and task_id is not None
    bodies = {
        item.slug: task_body(
            settings, str(process_id), str(task_id), item, url, target.ref, newest=item is plan.items[-1]
        )
        for item in plan.items
    }
    try:
        with timings.phase("fan-out"):
            _fan_out(api, plan, bodies, settings.fan_out_concurrency)
            # Ask the process itself about what is uncertain: tasks known to exist without their ID,
            # and failed ones, which may exist all the same (an answer lost with its connection, or a
            # duplicate-slug refusal in a form we do not recognise).
            unsure = [
                item
                for item in plan.items
                if item.state == FAILED or (item.state == EXISTING and not item.task_id)
            ]
            if unsure:
                known = api.existing_tasks(api.retrieve_process(process_id), task_id)
                for item in unsure:
                    if item.slug in known:
                        if item.state == FAILED:
                            logger.info("task %s exists after all: counted as already there", item.slug)
                        item.state, item.task_id, item.error = EXISTING, known[item.slug], None
    finally:
        path = write_plan(settings, plan)
    logger.info("plan written to %s", path)
    failed = plan.count(FAILED)
    status = EXIT_OK if plan.complete else EXIT_FAILURE
    logger.info(
        "trigger %s: %d revision(s) planned, %d created, %d already there, %d failed, %d left out; "
        "%d API retries; timings: %s",
        "done" if status == EXIT_OK else "FAILED",
        len(plan.items),
        plan.count(CREATED),
        plan.count(EXISTING),
        failed,
        len(plan.left_out),
        api.retries,
        timings,
    )
    if failed:
        logger.error(
            "%d task(s) could not be created: retry the process; tasks already created are skipped on a re-run",
            failed,
        )
    return status
