"""The dry run's look at each planned revision: the workers its task would register, and every file it
would refuse, found by the very rules the revision task runs (`read_configuration`), for the whole push
at once.

Only the dry run pays for it, and it fetches only what the listing and the files need: the trees of
the pushed range (or of the target alone) in one request, then every configuration file's blob in one
request, read by one `git cat-file --batch`. The listing costs two git processes whatever the push's
size (rules/listing.py). Revisions with the same entries are validated once. The legacy format reads
the files its patterns and descriptions name as it goes: those come in one more request a round, for
every legacy revision at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from git_import.git.repo import GitError, Repo
from git_import.retry import with_retries
from git_import.rules import selection as sel
from git_import.rules.configuration import (
    CONFIG_DIR,
    LEGACY_FILE,
    MAX_FILE_SIZE,
    Configuration,
    TreeEntry,
    configuration_format,
    first_reads,
    read_configuration,
)
from git_import.rules.listing import listing_key, replay
from git_import.rules.plan import Preview, WorkerPreview
from git_import.settings import Settings

logger = logging.getLogger(__name__)

CONFIGURATION_PATHS = [f"{CONFIG_DIR}/", LEGACY_FILE]

Listing = tuple[TreeEntry, ...]


def preview_revisions(
    settings: Settings, repo: Repo, target: str, selection: sel.Selection, *, trees_fetched: bool
) -> dict[str, Preview]:
    """Commit → what its task would find, for each chosen revision.

    `trees_fetched`: the selection already fetched the pushed range's trees (a path filter)."""
    chosen = [commit.hash for commit in selection.chosen]
    if not chosen:
        return {}
    # A push lists its range from `before`; any other selection is the target alone.
    before = settings.before if selection.mode == sel.PUSH else None
    trees = repo.commit_trees(target, before)
    if not trees_fetched:
        _fetch_trees(settings, repo, list(dict.fromkeys(tree for _, tree in trees)))
    listings = _list(repo, target, before, [commit for commit, _ in trees], set(chosen))
    configurations = _read_all(settings, repo, listings, dict(trees))
    return {commit: preview_of(configurations[commit]) for commit in chosen}


def _fetch_trees(settings: Settings, repo: Repo, trees: list[str]) -> None:
    """The trees (no blobs) in one request: the clone holds commits only."""
    what = "fetching the trees of the planned revisions"
    try:
        with_retries(
            lambda: repo.fetch_objects(trees, what=what),
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            what=what,
        )
    except GitError as exc:
        # Still right without it: git fetches each missing tree as it reads it, only slower.
        logger.warning("could not fetch the trees at once (%s); git fetches them one by one", exc.message)


def _list(
    repo: Repo, target: str, before: str | None, newest_first: list[str], chosen: set[str]
) -> dict[str, Listing]:
    """Each chosen revision's entries, as the revision task's `ls-tree` lists them: the target's own
    listing, or `before`'s replayed forward with the range's changes (two git processes in all)."""
    if before is None:
        return {target: listing_key(repo.ls_tree(target, *CONFIGURATION_PATHS))}
    base = repo.ls_tree(before, *CONFIGURATION_PATHS)
    changes = repo.first_parent_changes(target, before, CONFIGURATION_PATHS)
    # `newest_first` ends with `before` itself (the boundary): its listing is the base.
    order = [commit for commit in reversed(newest_first) if commit != before]
    return replay(base, changes, order, chosen)


class _Missing(Exception):
    """A blob the reader was asked for is not read yet: fetched in the next round."""

    def __init__(self, oids: list[str]) -> None:
        super().__init__(f"{len(oids)} blob(s) not read yet")
        self.oids = oids


@dataclass
class _Blobs:
    """The blobs read so far, and the reader `read_configuration` takes, serving from them."""

    settings: Settings
    repo: Repo
    read: dict[str, bytes | int] = field(default_factory=dict)

    def load(self, oids: Iterable[str]) -> None:
        """Fetch the blobs not read yet in one request, and read them with one `cat-file --batch`."""
        wanted = [oid for oid in dict.fromkeys(oids) if oid not in self.read]
        if not wanted:
            return
        what = "fetching the configuration files"
        with_retries(
            lambda: self.repo.fetch_objects(wanted, what=what),
            attempts=self.settings.retry_attempts,
            base_delay=self.settings.retry_base_delay,
            what=what,
        )
        self.read.update(self.repo.read_blobs(wanted, max_size=MAX_FILE_SIZE))

    def reader(self, oids: list[str]) -> dict[str, bytes | int]:
        missing = [oid for oid in oids if oid not in self.read]
        if missing:
            raise _Missing(missing)
        return {oid: self.read[oid] for oid in oids}


def _read_all(
    settings: Settings, repo: Repo, listings: dict[str, Listing], trees: dict[str, str]
) -> dict[str, Configuration]:
    """Commit → its configuration, each distinct one read once.

    The current format depends on its entries alone (blobs are named by content); the legacy format
    also reads files its patterns name anywhere in the commit: keyed by the root tree too."""
    keys = {commit: _key(entries, trees[commit]) for commit, entries in listings.items()}
    pending: dict[tuple[object, ...], str] = {}
    for commit, key in keys.items():
        pending.setdefault(key, commit)
    blobs = _Blobs(settings, repo)
    blobs.load(oid for commit in pending.values() for oid in first_reads(list(listings[commit])))
    done: dict[tuple[object, ...], Configuration] = {}
    all_files: dict[str, list[TreeEntry]] = {}
    while pending:
        missing: list[str] = []
        for key, commit in list(pending.items()):

            def files(commit: str = commit) -> list[TreeEntry]:
                # The legacy format's whole-commit listing, once a commit however many rounds it takes.
                if commit not in all_files:
                    all_files[commit] = repo.ls_tree(commit, ".", recursive=True)
                return all_files[commit]

            try:
                done[key] = read_configuration(list(listings[commit]), files, blobs.reader)
            except _Missing as exc:
                missing += exc.oids
                continue
            del pending[key]
        blobs.load(missing)
    return {commit: done[key] for commit, key in keys.items()}


def _key(entries: Listing, tree: str) -> tuple[object, ...]:
    return (entries, tree) if configuration_format(entries) == "legacy" else (entries,)


def preview_of(config: Configuration) -> Preview:
    """The workers and the refused files, by file: what the dry run shows of one revision."""
    workers = [WorkerPreview(worker.slug, worker.path) for worker in config.workers]
    workers += [WorkerPreview(None, error["file"], error["message"]) for error in config.errors]
    return Preview(config.format, tuple(sorted(workers, key=lambda worker: worker.file)))
