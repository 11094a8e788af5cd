"""The per-revision import task: register the workers one commit declares on Arkindex.

It fetches that one commit (depth 1, trees only), lists the configuration files, fetches just their
blobs in one request and reads them with one `git cat-file --batch`. Every file is checked before
anything is registered: with one bad file, nothing is, and every bad file is listed (exit status 2).
Running it twice leaves Arkindex as one run would: workers are found by slug and repository, versions
by revision URL.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from git_import import artifacts, logs, stop
from git_import.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ConfigError, FatalError
from git_import.git.process import short_gil_slices
from git_import.git.repo import GitEnv, GitError, Repo, git_env_for
from git_import.logs import Timings
from git_import.retry import with_retries
from git_import.rules.configuration import (
    CONFIG_DIR,
    LEGACY_FILE,
    MAX_FILE_SIZE,
    Configuration,
    WorkerFile,
    check_image_template,
    image_for,
    read_configuration,
)
from git_import.rules.urls import branch_and_tag, check_repository_url, revision_url, web_url
from git_import.settings import Settings

if TYPE_CHECKING:  # the API layer (requests, arkindex-client) is imported while the commit is fetched
    from git_import.arkindex import ArkindexAPI

logger = logging.getLogger(__name__)

REPORT_FILE = "import-report.json"
GRACE = 5.0  # seconds the registrations under way get to end after a stop signal


def fetch_revision(settings: Settings, git_env: GitEnv, workdir: Path, url: str, commit: str) -> Repo:
    """Fetch one commit and its trees, no history and no blobs."""
    path = workdir / "repo.git"

    def attempt() -> Repo:
        repo = Repo.init(path, url, git_env)
        try:
            repo.fetch(commit, filter="blob:none", depth=1, what=f"fetching revision {commit}")
            return repo
        except GitError as exc:
            if exc.transient or isinstance(exc, ConfigError):
                raise
            error = exc
        # A host that serves only what its refs advertise (protocol v0, no fetch by id): fetch the
        # ref's history instead, trees but no blobs where the host allows a filter.
        ref = settings.repository_ref
        if ref and ref != "HEAD":
            logger.info(
                "revision %s: the host refused to send it by id; fetching %s instead", commit[:10], ref
            )
            repo.fetch(f"+{ref}:refs/import/ref", filter="blob:none", what=f"fetching {ref}")
            if repo.holds_ancestor(commit, "refs/import/ref"):
                return repo
        raise ConfigError(
            f"revision {commit} could not be fetched from the repository ({error.message})",
            hint="check REPOSITORY_REVISION: the commit may have been removed by a force push",
        )

    return with_retries(
        attempt,
        attempts=settings.retry_attempts,
        base_delay=settings.retry_base_delay,
        what=f"fetching revision {commit}",
        cleanup=lambda: shutil.rmtree(path, ignore_errors=True),
    )


def read_revision_configuration(settings: Settings, repo: Repo, commit: str) -> Configuration:
    def read(oids: list[str]) -> dict[str, bytes]:
        unique = list(dict.fromkeys(oids))
        if not unique:
            return {}
        # One request for every blob, then one cat-file process: no round trip per file.
        with_retries(
            lambda: repo.fetch_objects(unique, what="fetching the configuration files"),
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            what="fetching the configuration files",
        )
        return dict(repo.read_blobs(unique, max_size=MAX_FILE_SIZE))

    entries = repo.ls_tree(commit, f"{CONFIG_DIR}/", LEGACY_FILE)
    # "." (the whole tree, as ls-tree runs with --full-tree): with no path at all, git 2.39 reads the
    # "--" that follows --end-of-options as a pathspec and lists nothing.
    return read_configuration(entries, lambda: repo.ls_tree(commit, ".", recursive=True), read)


def register_worker(
    api: ArkindexAPI,
    worker: WorkerFile,
    *,
    repository: str,
    rev_url: str,
    image: str,
    branch: str | None,
    tag: str | None,
    update_worker: bool = True,
) -> dict[str, Any]:
    """CreateWorker (+ PartialUpdateWorker when it changed, if `update_worker`), then ImportWorkerVersion
    or the existing one."""
    data = worker.data
    payload = {
        "name": data["display_name"],
        "type": data["type"],
        "slug": data["slug"],
        "description": data["description"],
        "repository_url": repository,
    }
    entry: dict[str, Any] = {"slug": worker.slug, "file": worker.path, "updated": []}
    remote = api.create_worker(payload)
    entry["worker_id"] = str(remote["id"])
    changed = {f: payload[f] for f in ("name", "type", "description") if remote.get(f) != payload[f]}
    if changed and not update_worker:
        logger.info(
            "worker %s: %s differ(s) on Arkindex; left to the push's newest revision (WORKER_UPDATE=0)",
            worker.slug,
            ", ".join(sorted(changed)),
        )
    elif changed:
        api.update_worker(entry["worker_id"], changed)
        entry["updated"].append("worker " + ", ".join(sorted(changed)))
    body: dict[str, Any] = {"yaml": worker.text, "revision_url": rev_url, "docker_image_iid": image}
    if branch:
        body["branch"] = branch
    if tag:
        body["tag"] = tag
    version, created = api.import_version(entry["worker_id"], body)
    entry["version_id"] = str(version["id"])
    entry["version"] = "created" if created else "existing"
    if not created:
        update = {f: body[f] for f in ("branch", "tag") if body.get(f) and version.get(f) != body[f]}
        if update:
            api.update_version(entry["version_id"], update)
            entry["updated"].append("version " + ", ".join(sorted(update)))
    return entry


@dataclass
class Source:
    """Where the revision comes from and what its versions are registered with, checked before any I/O."""

    commit: str
    url: str
    template: str
    branch: str | None
    tag: str | None
    revision_url: str


def check_source(settings: Settings) -> Source:
    """Every setting the revision task needs, checked before anything is fetched or registered."""
    commit = settings.repository_revision
    if not commit:
        raise ConfigError(
            "no revision to import",
            hint="give the commit hash as `arkindex-git-import revision <hash>` or set REPOSITORY_REVISION",
        )
    url = check_repository_url(settings.require_repository(), allow_local=settings.repository_allow_local)
    template = check_image_template(settings.worker_image_template)
    settings.require_api()
    branch, tag = branch_and_tag(settings.repository_ref)
    return Source(commit, url, template, branch, tag, revision_url(url, commit))


def read_source(settings: Settings, source: Source, timings: Timings) -> Configuration:
    """Fetch the commit and read its worker configuration, in a folder removed afterwards.

    Both run in a thread while this one imports the API layer that registration needs next: the fetch
    mostly waits on the server, and the import is about 0.1 s of the task's start."""
    with git_env_for(settings) as git_env, tempfile.TemporaryDirectory(prefix="git-import-") as tmp:

        def fetch_and_read() -> Configuration:
            with timings.phase("fetch"):
                logger.info("revision %s: fetching from %s", source.commit, source.url)
                repo = fetch_revision(settings, git_env, Path(tmp), source.url, source.commit)
            with timings.phase("read"):
                return read_revision_configuration(settings, repo, source.commit)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch") as pool, short_gil_slices():
            future = pool.submit(fetch_and_read)
            try:
                import git_import.arkindex  # noqa: F401

                return future.result()
            except BaseException:
                # A stop signal (or the fetch's own failure): git runs out of a terminal's reach, so
                # whatever still runs is stopped here, before the pool waits for its thread.
                git_env.stop()
                raise


def register_all(
    settings: Settings, source: Source, workers: list[WorkerFile], report: dict[str, Any]
) -> None:
    """Register every worker, WORKER_CONCURRENCY at once; the report lists them in the files' order,
    as one after the other would. A refusal of one worker is reported and the others go on. A refused
    token (exit 2) stops the task: every other worker would be refused the same way."""
    from git_import.arkindex import ArkindexAPI

    api = ArkindexAPI(settings, pool_size=settings.worker_concurrency)
    repository = web_url(source.url)

    def register(worker: WorkerFile) -> dict[str, Any]:
        image = image_for(
            source.template, slug=worker.slug, commit=source.commit, ref_name=source.branch or source.tag
        )
        entry = register_worker(
            api,
            worker,
            repository=repository,
            rev_url=source.revision_url,
            update_worker=settings.worker_update,
            image=image,
            branch=source.branch,
            tag=source.tag,
        )
        _log_registered(source.commit, entry)
        return entry

    try:
        outcomes = _in_pool(register, workers, settings.worker_concurrency)
    except _Interrupted as stopped:
        _record(source.commit, workers, stopped.outcomes, report)
        done = len(report["workers"])
        raise stopped.signal.with_message(
            f"{stopped.signal.message}: {done} of {len(workers)} workers registered; run the task again to "
            "register the rest"
        ) from None
    _record(source.commit, workers, outcomes, report)


class _Interrupted(Exception):
    def __init__(self, signal: stop.Stopped, outcomes: list[Any]) -> None:
        self.signal, self.outcomes = signal, outcomes


def _in_pool(
    register: Callable[[WorkerFile], dict[str, Any]], workers: list[WorkerFile], size: int
) -> list[Any]:
    """`register(worker)` for each worker, `size` at once; each outcome an entry, an error, or None (not
    started: a refused token or a stop signal came first)."""
    outcomes: list[Any] = [None] * len(workers)
    halt = threading.Event()

    def one(index: int) -> None:
        if halt.is_set() or stop.requested():
            return
        try:
            outcomes[index] = register(workers[index])
        except FatalError as exc:
            outcomes[index] = exc
            if exc.exit_code == EXIT_CONFIG:
                halt.set()

    pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="register")
    futures = [pool.submit(one, index) for index in range(len(workers))]
    try:
        wait(futures)
    except stop.Stopped as exc:
        # No worker starts now; those under way get a few seconds to end, so the report says what exists.
        halt.set()
        pool.shutdown(wait=False, cancel_futures=True)
        wait(futures, timeout=GRACE)
        raise _Interrupted(exc, list(outcomes)) from None
    pool.shutdown()
    return outcomes


def _record(commit: str, workers: list[WorkerFile], outcomes: list[Any], report: dict[str, Any]) -> None:
    """Put the outcomes in the report, in the files' order; raise a refused token's error (exit 2)."""
    refused = None
    for worker, outcome in zip(workers, outcomes, strict=True):
        if isinstance(outcome, dict):
            report["workers"].append(outcome)
        elif isinstance(outcome, FatalError):
            if outcome.exit_code == EXIT_CONFIG:
                refused = refused or outcome
                continue
            report["errors"].append({"file": worker.path, "slug": worker.slug, "message": str(outcome)})
            logger.error(
                "revision %s: worker %s (%s): %s",
                commit[:10],
                worker.slug,
                worker.path,
                outcome,
                extra=logs.fields(revision=commit, worker=worker.slug, file=worker.path),
            )
    if refused is not None:
        raise refused


def _log_registered(commit: str, entry: dict[str, Any]) -> None:
    updated = f"; updated {'; '.join(entry['updated'])}" if entry["updated"] else ""
    logger.info(
        "revision %s: worker %s → version %s (%s%s)",
        commit[:10],
        entry["slug"],
        entry["version_id"],
        entry["version"],
        updated,
        extra=logs.fields(revision=commit, worker=entry["slug"], file=entry["file"]),
    )


def run_revision(settings: Settings) -> int:
    """Run the per-revision import; returns the exit status."""
    timings = Timings()
    report: dict[str, Any] = {
        "revision": settings.repository_revision,
        "repository_url": None,
        "ref": settings.repository_ref,
        "revision_url": None,
        "configuration": None,
        "workers": [],
        "errors": [],
    }
    artifacts.check_writable(settings)  # before anything: the report must be written at the end
    try:
        source = check_source(settings)
        report["repository_url"], report["revision_url"] = source.url, source.revision_url
        config = read_source(settings, source, timings)
        report["configuration"] = config.format
        if config.errors:
            # All or nothing, as the trigger: a commit is registered whole or not at all, so Arkindex
            # never offers half of a commit's workers and one push fixes every file listed.
            report["errors"].extend(config.errors)
            for error in config.errors:
                logger.error("revision %s: %s: %s", source.commit[:10], error["file"], error["message"])
            status = EXIT_CONFIG
        elif config.format == "none":
            logger.info(
                "revision %s: no worker configuration (no %s/*.yml or %s): nothing to import",
                source.commit[:10],
                CONFIG_DIR,
                LEGACY_FILE,
            )
            return EXIT_OK
        else:
            with timings.phase("register"):
                register_all(settings, source, config.workers, report)
            status = EXIT_FAILURE if report["errors"] else EXIT_OK
    except (FatalError, stop.Stopped) as exc:
        report["errors"].append(
            {"file": None, "message": exc.message if isinstance(exc, stop.Stopped) else str(exc)}
        )
        raise
    finally:
        _write_report(settings, report)
    return _summary(source.commit, report, timings, status)


def _summary(commit: str, report: dict[str, Any], timings: Timings, status: int) -> int:
    """The closing lines: what was registered, and what to do about what was not."""
    logger.info(
        "revision %s %s: %d worker(s) registered (%d new version(s), %d existing), %d error(s); timings: %s",
        commit[:10],
        "done" if status == EXIT_OK else "FAILED",
        len(report["workers"]),
        sum(1 for w in report["workers"] if w["version"] == "created"),
        sum(1 for w in report["workers"] if w["version"] == "existing"),
        len(report["errors"]),
        timings,
    )
    if status == EXIT_CONFIG:
        files = len({error["file"] for error in report["errors"]})
        logger.error(
            "revision %s: nothing was registered: %d configuration file(s) above are invalid "
            "(fix the files named above and push again)",
            commit[:10],
            files,
        )
    elif report["errors"]:
        logger.error("Arkindex refused some workers (above): retry the task once the cause is fixed")
    return status


def _write_report(settings: Settings, report: dict[str, Any]) -> None:
    try:
        artifacts.write_json(settings, REPORT_FILE, report)
    except OSError as exc:
        logger.warning("could not write %s: %s", REPORT_FILE, exc)
