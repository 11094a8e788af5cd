"""Stage 1, the trigger: settings → clone → select → plan → fan out → plan file.

It clones the repository without files (`--filter=tree:0`: commits only), chooses the first-parent
revisions of the push, and creates one task per revision with `CreateTask` and `process_id`, each
running `arkindex-git-import revision <hash>` (stage 2, revision.py). A re-run creates only what the
process lacks; `import-plan.json` says what became of each revision.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from git_import import artifacts, logs, stop
from git_import.early import CLONE_FILTER, SHALLOW_DEPTH, EarlyClone, clone_depth
from git_import.errors import EXIT_FAILURE, EXIT_OK, ConfigError, FatalError
from git_import.git.process import short_gil_slices
from git_import.git.repo import Commit, GitEnv, GitError, Repo, git_env_for
from git_import.logs import Timings
from git_import.retry import with_retries
from git_import.rules import selection as sel
from git_import.rules.plan import (
    CREATED,
    EXISTING,
    FAILED,
    NEW,
    Plan,
    PlanItem,
    Preview,
    build_plan,
    dry_run_line,
)
from git_import.rules.urls import NULL_SHA, check_pathspecs, check_ref, check_repository_url, clone_branch
from git_import.settings import Settings

if TYPE_CHECKING:  # the API layer (requests, arkindex-client) is imported while the clone runs
    from git_import.arkindex import ArkindexAPI

logger = logging.getLogger(__name__)

PLAN_FILE = "import-plan.json"
TARGET_REF = "refs/import/target"


@dataclass
class Inputs:
    """The checked settings the trigger works from."""

    url: str
    ref: str | None  # as given: a branch, a tag or a full ref; None for the default branch
    paths: list[str]
    process_id: uuid.UUID | None  # None in a dry run
    task_id: uuid.UUID | None


@dataclass
class Target:
    ref: str | None  # full ref, or None when only a commit was given
    commit: str


@dataclass
class Fetched:
    """What a clone or fetch of the ref gave: the ref's full name and tip, and the local ref holding its
    history (None when the ref is not on the server, or when only the pushed commit is needed)."""

    repo: Repo
    ref: str | None = None
    tip: str | None = None
    local_ref: str | None = None


@dataclass
class Prepared:
    """The clone's answer and the process' answer, both read at once."""

    target: Target
    selection: sel.Selection
    api: ArkindexAPI | None
    existing: dict[str, str]  # slug → task ID of the tasks already in the process run
    previews: dict[str, Preview]  # the dry run's: commit → the workers its task would find


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
    timings = Timings()
    if dry_run:
        logger.info("%s", dry_run_line(settings.import_image))
    inputs = check_inputs(settings, dry_run)
    if settings.repository_after == NULL_SHA:
        logger.info("the push deleted %s: nothing to import", inputs.ref or "the ref")
        return EXIT_OK
    prepared = prepare(settings, inputs, dry_run, timings, early)
    plan = make_plan(settings, inputs, prepared)
    if dry_run:
        plan.dry_run_image = settings.import_image
        print_plan(plan, fmt, out or sys.stdout)
        invalid = sum(1 for item in plan.items if item.preview is not None and item.preview.invalid)
        logger.info(
            "dry run done: %d revision(s) planned, %d with an invalid file; nothing was created; timings: %s",
            len(plan.items),
            invalid,
            timings,
        )
        return EXIT_OK
    assert prepared.api is not None
    artifacts.check_writable(settings)  # before the first API write: the plan must be written at the end
    try:
        with timings.phase("fan-out"):
            fan_out(settings, inputs, prepared, plan)
    except stop.Stopped as stopped:
        raise stopped.with_message(f"{stopped.message}: {stopped_summary(plan)}") from None
    finally:
        path = artifacts.write_json(settings, PLAN_FILE, plan.to_json())
        logger.info("plan written to %s", path)
    return closing_summary(plan, prepared.api.retries, timings)


def check_inputs(settings: Settings, dry_run: bool) -> Inputs:
    url = check_repository_url(settings.require_repository(), allow_local=settings.repository_allow_local)
    paths = check_pathspecs(settings.paths)
    ref = check_ref(settings.repository_ref) if settings.repository_ref else None
    process_id, task_id = (None, None) if dry_run else settings.require_process()
    return Inputs(url, ref, paths, process_id, task_id)


# --- clone and process, at once ---------------------------------------------------------------------


def prepare(
    settings: Settings, inputs: Inputs, dry_run: bool, timings: Timings, early: EarlyClone | None
) -> Prepared:
    """Clone and select in a thread while this one reads the process: both wait on the network."""
    with git_env_for(settings) as git_env, tempfile.TemporaryDirectory(prefix="git-import-") as tmp:

        def clone_and_select() -> tuple[Target, sel.Selection, dict[str, Preview]]:
            with timings.phase("clone"):
                logger.info("cloning %s (%s)", inputs.url, inputs.ref or "default branch")
                repo, target = clone(settings, git_env, Path(tmp), inputs, early)
            with timings.phase("select"):
                selection = select(settings, repo, target, inputs.paths)
            if not dry_run:  # a real run leaves the files to each revision's task
                return target, selection, {}
            with timings.phase("preview"):
                return target, selection, preview(settings, repo, target, selection, inputs.paths)

        api_error: Exception | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clone") as pool, short_gil_slices():
            git_future = pool.submit(clone_and_select)
            try:
                try:
                    with timings.phase("process"):
                        api, existing = read_process(settings, inputs, dry_run)
                except Exception as exc:
                    api_error = exc
                git_error = git_future.exception()
            except BaseException:
                # A stop signal: git runs out of a terminal's reach; stop it before the pool waits.
                if early is not None:
                    early.close()
                git_env.stop()
                raise
    # A wrong setting or token is reported first; then a git failure; then any other API failure.
    for error in (api_error if isinstance(api_error, ConfigError) else None, git_error, api_error):
        if error is not None:
            raise error
    target, selection, previews = git_future.result()
    return Prepared(target, selection, api, existing, previews)


def read_process(
    settings: Settings, inputs: Inputs, dry_run: bool
) -> tuple[ArkindexAPI | None, dict[str, str]]:
    """The API client and the tasks the process already holds (a dry run reads them when it can)."""
    from git_import.arkindex import ArkindexAPI

    if not dry_run:
        assert inputs.process_id is not None
        api = ArkindexAPI(settings, pool_size=settings.fan_out_concurrency)
        existing = api.existing_tasks(api.retrieve_process(inputs.process_id), inputs.task_id)
        logger.info("process %s holds %d task(s) in its current run", inputs.process_id, len(existing))
        return api, existing
    if settings.ponos_process and settings.arkindex_api_url:
        try:
            dry_api = ArkindexAPI(settings)
            process = dry_api.retrieve_process(settings.ponos_process)
            return None, dry_api.existing_tasks(process, settings.ponos_task)
        except FatalError as exc:
            logger.warning("dry run: could not read the process' tasks (%s); all revisions shown as new", exc)
    return None, {}


# --- clone --------------------------------------------------------------------------------------------


def clone(
    settings: Settings, git_env: GitEnv, workdir: Path, inputs: Inputs, early: EarlyClone | None
) -> tuple[Repo, Target]:
    """Fetch what selection needs, without files: commits only (the trees of a path filter come later).

    Without `before` (a new branch) only the target commit is needed: depth 1. With `before`, first the
    ref's last SHALLOW_DEPTH commits; the whole history only when they cannot tell where the push starts
    (`history_suffices`), so that selection always gets the whole history's answer. The first clone
    takes the `early` clone when it is this very clone."""
    path = workdir / "repo.git"
    pending = [early] if early is not None else []

    def clone_at(depth: int | None) -> tuple[Repo, Target | None]:
        def attempt() -> tuple[Repo, Target | None]:
            fetched = fetch_ref(settings, git_env, path, inputs, pending.pop() if pending else None, depth)
            return fetched.repo, reach_after(settings, fetched, inputs.ref, depth)

        return with_retries(
            attempt,
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            what="cloning the repository",
            cleanup=lambda: shutil.rmtree(path, ignore_errors=True),
        )

    depth = clone_depth(settings.before)
    repo, target = clone_at(depth)
    if target is not None and history_suffices(repo, target.commit, settings.before):
        return repo, target
    logger.info(
        "the ref's last %d commits do not show where the push starts: cloning the whole history", depth
    )
    shutil.rmtree(path, ignore_errors=True)
    repo, target = clone_at(None)
    assert target is not None  # the whole history tells
    return repo, target


def fetch_ref(
    settings: Settings,
    git_env: GitEnv,
    path: Path,
    inputs: Inputs,
    early: EarlyClone | None,
    depth: int | None,
) -> Fetched:
    """Clone the ref (the common case: one git process) or, for a full ref, fetch it into a new repository."""
    branch = clone_branch(inputs.ref)
    if branch is False:
        if early is not None:
            early.close()  # not a clone this path makes
        return _fetch_full_ref(settings, Repo.init(path, inputs.url, git_env), inputs.ref, depth)
    try:
        repo = (early and early.take(path, inputs.url, branch, depth, git_env)) or Repo.clone(
            path, inputs.url, git_env, branch=branch, filter=CLONE_FILTER, depth=depth
        )
    except GitError as exc:
        if exc.transient or "not found in upstream" not in exc.message:
            raise
        _missing_ref(inputs.ref, settings.repository_after)
        shutil.rmtree(path, ignore_errors=True)
        return Fetched(Repo.init(path, inputs.url, git_env))
    refs = repo.local_refs()
    if not refs:
        _missing_ref(inputs.ref, settings.repository_after)
        return Fetched(repo)
    full_ref, tip = refs[0]
    return Fetched(repo, full_ref, tip, full_ref)


def _fetch_full_ref(settings: Settings, repo: Repo, ref: str | None, depth: int | None) -> Fetched:
    assert ref is not None
    refs, _ = repo.ls_remote(ref)
    if ref not in refs:
        _missing_ref(ref, settings.repository_after)
        return Fetched(repo)
    after = settings.repository_after
    if after is None or refs[ref] == after or settings.before is not None:
        repo.fetch(f"+{ref}:{TARGET_REF}", filter=CLONE_FILTER, depth=depth, what=f"fetching {ref}")
        return Fetched(repo, ref, repo.rev_parse_commit(TARGET_REF), TARGET_REF)
    return Fetched(repo, ref)


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


def reach_after(
    settings: Settings, fetched: Fetched, given_ref: str | None, depth: int | None
) -> Target | None:
    """The target: REPOSITORY_AFTER when given (fetched by itself when it is not on the ref's history),
    else the ref's tip. Asking the clone costs the push, not the history (`Repo.holds_ancestor`).
    None when REPOSITORY_AFTER may be on the ref below the ref's last SHALLOW_DEPTH commits: the whole
    history tells."""
    repo, full_ref, after = fetched.repo, fetched.ref, settings.repository_after
    if after is None or after == fetched.tip:
        assert fetched.tip is not None
        return Target(full_ref, fetched.tip)
    on_ref = fetched.local_ref is not None and repo.holds_ancestor(after, fetched.local_ref)
    if on_ref:
        return Target(full_ref, after)
    if depth == SHALLOW_DEPTH and fetched.local_ref is not None and repo.shallow_commits():
        return None
    if given_ref is None and full_ref is not None:
        # The ref was not given: the default branch was a guess, and `after` is not on it (or cannot be
        # told to be). Its tasks would carry a wrong branch: carry none.
        logger.warning(
            "REPOSITORY_AFTER %s is not known to be on the default branch %s: its tasks carry no "
            "ref; set REPOSITORY_REF to the pushed branch or tag",
            after,
            full_ref,
        )
        full_ref = None
    try:
        repo.fetch(after, filter=CLONE_FILTER, depth=depth, what=f"fetching commit {after}")
    except GitError as exc:
        if exc.transient:
            raise
        raise ConfigError(
            f"REPOSITORY_AFTER {after} does not exist in the repository",
            hint="give the hash of a pushed commit, or leave REPOSITORY_AFTER empty to import the ref's tip",
        ) from None
    return Target(full_ref, after)


def history_suffices(repo: Repo, target: str, before: str | None) -> bool:
    """Whether this clone gives selection the answer the whole history would give.

    A shallow clone leaves out the parents of its boundary commits (`Repo.shallow_commits`). What it
    holds is true of the whole history (an ancestor in the clone is an ancestor); only what it leaves
    out can mislead. Selection keeps the first-parent commits from the target down to the first one
    that is an ancestor of `before`. In the clone, that walk is exact when:
    1. it ends on a commit that is no boundary, whose first parent C (if any: a root has none) is
       then held and an ancestor of `before`; and `before` is an ancestor of the target;
    2. no boundary commit is an ancestor of `before` without being one of C: then every ancestor of
       `before` that C lacks is held with all its parents, so a kept commit, which descends from C,
       is not an ancestor of `before` in the whole history either.
    A linear push (C is `before`) satisfies both with the walk alone: one git process that reads the
    push; three at most."""
    boundary = repo.shallow_commits()
    if not boundary or before is None or before == target:
        return True
    end = repo.first_parent_end(target, before)
    if end is None or end[0] in boundary:
        return False  # `before` below the clone (or not in it at all), or the walk cut short
    first_parent = end[1][:1]
    if first_parent == [before]:
        return True
    if not repo.holds_ancestor(before, target):
        return False  # below the clone, or not in the target's history at all: the whole history tells
    return boundary.isdisjoint(repo.rev_list(before, *(f"^{c}" for c in first_parent)))


# --- selection ----------------------------------------------------------------------------------------


def select(settings: Settings, repo: Repo, target: Target, paths: list[str]) -> sel.Selection:
    """Choose the revisions: the first-parent commits from the target down to `before` (excluded), as
    `git rev-list --first-parent TARGET ^BEFORE` lists them; the target alone for a new branch or tag,
    or when `before` is gone from the server (a rewritten history)."""
    before = settings.before
    if before is None:
        return sel.select_target(_tip(repo, target), sel.new_ref_mode(target.ref))
    if before == target.commit:
        return sel.Selection(mode=sel.PUSH, chosen=[])
    # `before` is never given to git before it is known to be in the clone: a partial clone would
    # fetch a missing one from the server.
    if repo.holds_ancestor(before, target.commit):
        if paths:
            _fetch_range_trees(repo, target.commit, before)
        pushed = repo.first_parent_log(target.commit, exclude=before, paths=paths or None)
        return sel.select_push(pushed, settings.max_revisions)
    # `before` is not in the target's history: a rewritten history, or a wrong setting.
    if _on_any_branch(repo, before):
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
    return sel.select_target(_tip(repo, target), sel.REWRITTEN, warning)


def _tip(repo: Repo, target: Target) -> Commit:
    return repo.first_parent_log(target.commit, limit=1)[0]


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


def preview(
    settings: Settings, repo: Repo, target: Target, selection: sel.Selection, paths: list[str]
) -> dict[str, Preview]:
    """The dry run's look at each chosen revision's workers (preview.py, imported by the dry run only)."""
    from git_import.preview import preview_revisions

    # A path filter made the selection fetch the pushed range's trees already (_fetch_range_trees).
    fetched = bool(paths) and selection.mode == sel.PUSH
    return preview_revisions(settings, repo, target.commit, selection, trees_fetched=fetched)


def _on_any_branch(repo: Repo, commit: str) -> bool:
    """Whether a commit is on any branch or tag of the server (their commits fetched, nothing else)."""
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
    return repo.has_commit(commit)


# --- plan and fan-out ---------------------------------------------------------------------------------


def make_plan(settings: Settings, inputs: Inputs, prepared: Prepared) -> Plan:
    target, selection = prepared.target, prepared.selection
    plan = build_plan(
        repository_url=inputs.url,
        ref=target.ref,
        target=target.commit,
        before=settings.before,
        paths=inputs.paths,
        selection=selection,
        existing=prepared.existing,
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
        item.preview = prepared.previews.get(item.revision.hash)
        if item.state == EXISTING:
            logger.info(
                "revision %s: task %s already exists, skipped",
                item.revision.hash[:10],
                item.slug,
                extra=logs.fields(revision=item.revision.hash, slug=item.slug, task_id=item.task_id),
            )
    return plan


def print_plan(plan: Plan, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        width = shutil.get_terminal_size().columns if out.isatty() else None  # a pipe gets it whole
        out.write(plan.render_table(width) + "\n")


def task_body(
    settings: Settings, process_id: str, parent: str, item: PlanItem, url: str, ref: str | None, newest: bool
) -> dict[str, Any]:
    """The CreateTask body of one revision. The process environment reaches the child through the
    server (docs/arkindex-api.md, the environment): no secret is ever copied here. Only the newest
    revision's task updates the workers' attributes: sibling tasks run in any order, and an older one
    must not win."""
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


def fan_out(settings: Settings, inputs: Inputs, prepared: Prepared, plan: Plan) -> None:
    """Create the planned tasks, then ask the process about those whose fate is unknown."""
    from git_import.fanout import FanOut

    api = prepared.api
    assert api is not None and inputs.process_id is not None and inputs.task_id is not None
    bodies = {
        item.slug: task_body(
            settings,
            str(inputs.process_id),
            str(inputs.task_id),
            item,
            inputs.url,
            prepared.target.ref,
            newest=item is plan.items[-1],
        )
        for item in plan.items
    }
    FanOut(api, plan, bodies, settings.fan_out_concurrency).run()
    # Tasks known to exist without their ID, and failed ones, which may exist all the same (an answer
    # lost with its connection, or a duplicate-slug refusal in a form not recognised).
    unsure = [
        item for item in plan.items if item.state == FAILED or (item.state == EXISTING and not item.task_id)
    ]
    if unsure:
        known = api.existing_tasks(api.retrieve_process(inputs.process_id), inputs.task_id)
        for item in unsure:
            if item.slug in known:
                if item.state == FAILED:
                    logger.info("task %s exists after all: counted as already there", item.slug)
                item.state, item.task_id, item.error = EXISTING, known[item.slug], None


def stopped_summary(plan: Plan) -> str:
    """What a stop signal left: the line a process admin reads to know what to do."""
    done = plan.count(CREATED) + plan.count(EXISTING)
    if plan.count(NEW) == 0 and plan.count(FAILED) == 0:
        return f"all {len(plan.items)} tasks exist"
    return f"{done} of {len(plan.items)} tasks created; run the process again to create the rest"


def closing_summary(plan: Plan, retries: int, timings: Timings) -> int:
    failed = plan.count(FAILED)
    status = EXIT_OK if plan.complete else EXIT_FAILURE
    counts = {
        "planned": len(plan.items),
        "created": plan.count(CREATED),
        "already_there": plan.count(EXISTING),
        "failed": failed,
        "left_out": len(plan.left_out),
        "api_retries": retries,
    }
    logger.info(
        "trigger %s: %d revision(s) planned, %d created, %d already there, %d failed, %d left out; "
        "%d API retries; timings: %s",
        "done" if status == EXIT_OK else "FAILED",
        *counts.values(),
        timings,
        extra=logs.fields(counts=counts, phases=timings.rounded()),
    )
    if failed:
        logger.error(
            "%d task(s) could not be created: retry the process; tasks already created are skipped on a re-run",
            failed,
        )
    return status
