"""The trigger: clone, choose revisions, fan out one import task per revision with `process_id`."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from git_import import selection as sel
from git_import.api import APIError, ArkindexAPI
from git_import.errors import EXIT_FAILURE, EXIT_OK, ConfigError, FatalError
from git_import.gitrepo import Commit, GitEnv, GitError, Repo, with_retries
from git_import.plan import CREATED, EXISTING, FAILED, NEW, Plan, PlanItem, build_plan
from git_import.redact import scrub
from git_import.settings import NULL_SHA, Settings
from git_import.urls import check_pathspecs, check_ref, check_repository_url

logger = logging.getLogger(__name__)

PLAN_FILE = "import-plan.json"
TARGET_REF = "refs/import/target"
PROGRESS_INTERVAL = 5.0


class Timings:
    """Wall time of each phase, for the closing summary line."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.started = time.monotonic()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.monotonic() - start

    def __str__(self) -> str:
        parts = [f"{name} {seconds:.2f}s" for name, seconds in self.phases.items()]
        parts.append(f"total {time.monotonic() - self.started:.2f}s")
        return ", ".join(parts)


@dataclass
class Target:
    ref: str | None  # full ref, or None when only a commit was given
    commit: str


def git_env_for(settings: Settings) -> GitEnv:
    return GitEnv(
        username=settings.repository_username,
        token=settings.token,
        allow_local=settings.repository_allow_local,
        stall_timeout=settings.git_stall_timeout,
        timeout=settings.git_timeout,
    )


def _resolve_ref(repo: Repo, ref: str | None) -> tuple[str | None, str | None]:
    """(full ref, its commit or tag object) on the remote; (None, None) when the ref does not exist."""
    if ref is None:
        refs, head = repo.ls_remote("HEAD")
        if not refs:
            return None, None
        if head:
            return head, refs.get("HEAD")
        return "HEAD", refs.get("HEAD")
    if ref.startswith("refs/") or ref == "HEAD":
        candidates = [ref]
    else:
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    refs, _ = repo.ls_remote(*candidates)
    for candidate in candidates:
        if candidate in refs:
            return candidate, refs[candidate]
    return None, None


def clone(
    settings: Settings, git_env: GitEnv, workdir: Path, url: str, ref: str | None, paths: list[str]
) -> tuple[Repo, Target]:
    """Fetch what selection needs, without checking out files: commits only (trees too with a path filter).

    Without `before` (a new branch) only the target commit is needed: depth 1."""
    need_history = settings.before is not None
    filter = "blob:none" if paths else "tree:0"
    after = settings.repository_after
    repo_path = workdir / "repo.git"

    def attempt() -> tuple[Repo, Target]:
        repo = Repo.init(repo_path, url, git_env)
        full_ref, tip = _resolve_ref(repo, ref)
        if full_ref is None and after is None:
            if ref is None:
                raise ConfigError(
                    "the repository is empty: it has no branch to import",
                    hint="push a commit to the repository, or check REPOSITORY_URL",
                )
            raise ConfigError(
                f"REPOSITORY_REF {ref!r} does not exist in the repository",
                hint="give an existing branch or tag, or leave REPOSITORY_REF empty for the default branch",
            )
        depth = None if need_history else 1
        fetched_ref = full_ref is not None and (after is None or tip == after or need_history)
        if fetched_ref:
            repo.fetch(f"+{full_ref}:{TARGET_REF}", filter=filter, depth=depth, what=f"fetching {full_ref}")
        commit = after or repo.rev_parse_commit(TARGET_REF)
        if after is not None and after not in _ancestors(repo, TARGET_REF if fetched_ref else None):
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
    out = repo.run("rev-list", "--end-of-options", rev, what="listing commits")
    return set(out.decode().split())


def select(settings: Settings, repo: Repo, target: Target, paths: list[str]) -> tuple[sel.Selection, Commit]:
    """Choose the revisions to import (CONTRACT: first-parent commits after `before`, or the target alone)."""
    tip = repo.first_parent_log(target.commit, limit=1)[0]
    before = settings.before
    if before is None:
        return sel.select_target(tip, sel.NEW_BRANCH), tip
    if before == target.commit:
        return sel.Selection(mode=sel.PUSH, chosen=[]), tip
    if before in _ancestors(repo, target.commit):
        commits = repo.first_parent_log(target.commit, exclude=before, paths=paths)
        return sel.select_push(commits, settings.max_revisions), tip
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
    return sel.select_target(tip, sel.REWRITTEN, warning), tip


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
    out = repo.run("rev-list", "--all", what="listing commits")
    return commit in set(out.decode().split())


def _fan_out(api: ArkindexAPI, plan: Plan, bodies: dict[str, dict[str, Any]], concurrency: int) -> None:
    """Create the planned tasks with a bounded pool over one keep-alive session, logging steady progress."""
    todo = [item for item in plan.items if item.state == NEW]
    total = len(todo)
    if not total:
        return
    done = 0
    lock = threading.Lock()
    last_report = [time.monotonic()]

    def create(item: PlanItem) -> None:
        nonlocal done
        try:
            task, created = api.create_task(bodies[item.slug])
            if created:
                assert task is not None
                item.state, item.task_id = CREATED, str(task["id"])
            else:
                item.state = EXISTING
                logger.info("task %s already exists (created by another run): skipped", item.slug)
        except (APIError, FatalError) as exc:
            item.state, item.error = FAILED, exc.message
            logger.error("could not create task %s for revision %s: %s", item.slug, item.revision.hash, exc)
        with lock:
            done += 1
            now = time.monotonic()
            if now - last_report[0] >= PROGRESS_INTERVAL and done < total:
                last_report[0] = now
                logger.info("created %d/%d", done, total)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fan-out") as pool:
        list(pool.map(create, todo))
    logger.info("created %d/%d", done, total)


def task_body(
    settings: Settings, process_id: str, parent: str, item: PlanItem, url: str, ref: str | None, newest: bool
) -> dict[str, Any]:
    """The CreateTask body of one revision. The process environment reaches the child through the
    server [CONTRACT §2]: no secret is ever copied here. Only the newest revision's task updates the
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
    settings: Settings, *, dry_run: bool = False, fmt: str = "text", out: TextIO | None = None
) -> int:
    """Run the trigger; returns the exit status (0 when every planned task exists at the end)."""
    out = out or sys.stdout
    timings = Timings()
    url = check_repository_url(settings.require_repository(), allow_local=settings.repository_allow_local)
    paths = check_pathspecs(settings.paths)
    ref = check_ref(settings.repository_ref) if settings.repository_ref else None
    if settings.repository_after == NULL_SHA:
        logger.info("the push deleted %s: nothing to import", ref or "the ref")
        return EXIT_OK

    api: ArkindexAPI | None = None
    existing: dict[str, str] = {}
    process_id = task_id = None
    with timings.phase("process"):
        if not dry_run:
            process_id, task_id = settings.require_process()
            api = ArkindexAPI(settings, pool_size=settings.fan_out_concurrency)
            process = api.retrieve_process(process_id)
            existing = api.existing_tasks(process)
            logger.info("process %s holds %d task(s) in its current run", process_id, len(existing))
        elif settings.ponos_process and settings.arkindex_api_url:
            try:
                dry_api = ArkindexAPI(settings)
                existing = dry_api.existing_tasks(dry_api.retrieve_process(settings.ponos_process))
            except FatalError as exc:
                logger.warning(
                    "dry run: could not read the process' tasks (%s); all revisions shown as new", exc
                )

    with git_env_for(settings) as git_env, tempfile.TemporaryDirectory(prefix="git-import-") as tmp:
        with timings.phase("clone"):
            logger.info("cloning %s (%s)", url, ref or "default branch")
            repo, target = clone(settings, git_env, Path(tmp), url, ref, paths)
        with timings.phase("select"):
            selection, _tip = select(settings, repo, target, paths)

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
            out.write(plan.render_table() + "\n")
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
            missing_ids = [item for item in plan.items if item.state == EXISTING and not item.task_id]
            if missing_ids:
                known = api.existing_tasks(api.retrieve_process(process_id))
                for item in missing_ids:
                    item.task_id = known.get(item.slug)
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


def describe_exception(exc: BaseException) -> str:
    return scrub(str(exc))
