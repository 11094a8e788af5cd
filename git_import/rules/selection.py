"""Which revisions to import: pure rules over commits that git already listed."""

from __future__ import annotations

from dataclasses import dataclass, field

from git_import.rules.commit import Commit

PUSH = "push"  # the first-parent commits between `before` and the target
NEW_BRANCH = "new branch"  # no usable `before`: the target alone
NEW_TAG = "new tag"  # a tag push: the tagged commit alone
REWRITTEN = "rewritten history"  # `before` is gone from the server: the target alone


@dataclass
class Selection:
    mode: str
    chosen: list[Commit]  # oldest first
    left_out: list[Commit] = field(default_factory=list)  # oldest first
    warnings: list[str] = field(default_factory=list)


def select_push(range_newest_first: list[Commit], max_revisions: int) -> Selection:
    """Keep the newest `max_revisions` of a push range and return them oldest first."""
    kept = range_newest_first[:max_revisions]
    left_out = range_newest_first[max_revisions:]
    return Selection(mode=PUSH, chosen=kept[::-1], left_out=left_out[::-1])


def select_target(target: Commit, mode: str, warning: str | None = None) -> Selection:
    """Import the target commit alone (a new branch, or a `before` the server no longer has)."""
    return Selection(mode=mode, chosen=[target], warnings=[warning] if warning else [])


def new_ref_mode(full_ref: str | None) -> str:
    """How the target alone of a push with no `before` is labelled: a tag push is no new branch."""
    return NEW_TAG if full_ref and full_ref.startswith("refs/tags/") else NEW_BRANCH
