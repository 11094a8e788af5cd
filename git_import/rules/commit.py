"""A commit as the rules see it, and the parser of the log record git writes for it. Pure: no I/O.

It lives here, not next to the git calls, so that the rules that choose and plan revisions can name a
commit without importing the layer that runs git."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Commit:
    hash: str
    author: str
    date: str
    summary: str


def parse_log_record(record: bytes) -> Commit | None:
    """One record of `git log -z --format=%H%x1f%an%x1f%aI%x1f%s` (git/repo.py's format); None when empty.

    The subject is split off last (maxsplit 3) so that a unit separator in it cannot shift the fields."""
    text = record.decode(errors="replace").strip("\n")
    if not text:
        return None
    commit, author, date, summary = text.split("\x1f", 3)
    return Commit(commit, author, date, summary)
