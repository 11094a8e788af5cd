"""Each revision's configuration entries over a whole push, from one listing and one log. Pure: no I/O.

The revision task lists one commit's entries with `git ls-tree REV arkindex/ .arkindex.yml`. The dry
run needs that listing for every planned revision: one `ls-tree` a revision would start hundreds of
git processes on a large push, so it lists the push's bottom (`before`) once and replays the changes
`git log --first-parent --raw -t` reports, commit by commit, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable

from git_import.rules.configuration import TreeEntry, is_configuration_path

# (new mode, new oid, status letter, path), as git/repo.py's `first_parent_changes` gives them
Change = tuple[str, str, str, str]

_KINDS = {"040000": "tree", "160000": "commit"}  # any other mode is a blob (a file or a link)


def entry_kind(mode: str) -> str:
    """The object type `git ls-tree` prints for a mode."""
    return _KINDS.get(mode, "blob")


def listing_key(entries: Iterable[TreeEntry]) -> tuple[TreeEntry, ...]:
    """A listing in a canonical order (by path), so that two revisions with the same entries compare equal."""
    return tuple(sorted(entries, key=lambda entry: entry[3]))


def replay(
    base: Iterable[TreeEntry],
    changes: list[tuple[str, list[Change]]],
    order: list[str],
    wanted: set[str],
) -> dict[str, tuple[TreeEntry, ...]]:
    """The listing of each `wanted` commit.

    `base`: the listing of the range's bottom; `changes`: (commit, what it changed), in any order,
    commits that changed nothing left out; `order`: every commit of the range, oldest first (the bottom
    excluded), so that a commit that changed nothing keeps its first parent's listing."""
    state = {entry[3]: entry for entry in base}
    changed = dict(changes)
    listings = {}
    for commit in order:
        for mode, oid, status, path in changed.get(commit, ()):
            # The log also reports what lies deeper in arkindex/, which the listing does not show.
            if not is_configuration_path(path):
                continue
            if status == "D":
                state.pop(path, None)
            else:
                state[path] = (mode, entry_kind(mode), oid, path)
        if commit in wanted:
            listings[commit] = listing_key(state.values())
    return listings
