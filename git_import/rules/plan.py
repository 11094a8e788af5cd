"""The plan of tasks: one per chosen revision, with what became of it. Pure: no I/O."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

from git_import.rules.commit import Commit
from git_import.rules.selection import Selection
from git_import.rules.urls import task_slug

NEW = "new"  # would be created (dry run) or not created yet
CREATED = "created"
EXISTING = "already there"
FAILED = "failed"
LEFT_OUT = "left out"


@dataclass(frozen=True)
class WorkerPreview:
    """One worker a revision declares, or one file its task would refuse (slug None, unknown then)."""

    slug: str | None
    file: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "file": self.file, "valid": self.error is None, "error": self.error}


# Past this, a revision's slugs are counted, not listed: the column stays readable.
_LISTED_SLUGS_WIDTH = 40


@dataclass(frozen=True)
class Preview:
    """What a revision's task would find (the dry run): its configuration format ("current", "legacy"
    or "none") and its workers, the files it would refuse among them, by file."""

    configuration: str
    workers: tuple[WorkerPreview, ...] = ()

    @property
    def invalid(self) -> list[WorkerPreview]:
        return [worker for worker in self.workers if worker.error is not None]

    def cell(self) -> tuple[str, ...]:
        """The WORKERS cell, as alternatives from the most telling to the shortest: the table shows the
        first that fits the column."""
        if self.configuration == "none":
            return ("none",)
        count, bad = len(self.workers), len(self.invalid)
        if bad:
            return (f"{count} ({bad} invalid)", f"{bad} invalid")
        counted = (f"{count} worker{'s' if count != 1 else ''}", str(count))
        listed = ", ".join(str(worker.slug) for worker in self.workers)
        return (listed, *counted) if len(listed) <= _LISTED_SLUGS_WIDTH else counted


@dataclass
class PlanItem:
    revision: Commit
    slug: str
    state: str = NEW
    task_id: str | None = None
    error: str | None = None
    preview: Preview | None = None  # the dry run's only

    def to_json(self) -> dict[str, Any]:
        shown = {
            **_revision_json(self.revision),
            "task": {"slug": self.slug, "state": self.state, "id": self.task_id, "error": self.error},
        }
        if self.preview is not None:
            shown["configuration"] = self.preview.configuration
            shown["workers"] = [worker.to_json() for worker in self.preview.workers]
        return shown


@dataclass
class Plan:
    repository_url: str
    ref: str | None
    target: str
    before: str | None
    paths: list[str]
    selection: Selection
    items: list[PlanItem] = field(default_factory=list)
    # The dry run's: the image its tasks would run. The plan file of a real run keeps its shape.
    dry_run_image: str | None = None

    @property
    def left_out(self) -> list[Commit]:
        return self.selection.left_out

    def count(self, state: str) -> int:
        return sum(1 for item in self.items if item.state == state)

    @property
    def complete(self) -> bool:
        """Every planned task exists."""
        return all(item.state in (CREATED, EXISTING) for item in self.items)

    def to_json(self) -> dict[str, Any]:
        dry_run = {"dry_run": True, "image": self.dry_run_image} if self.dry_run_image is not None else {}
        return {
            **dry_run,
            "repository_url": self.repository_url,
            "ref": self.ref,
            "target": self.target,
            "before": self.before,
            "paths": self.paths,
            "selection": self.selection.mode,
            "warnings": self.selection.warnings,
            "revisions": [item.to_json() for item in self.items],
            "left_out": {
                "count": len(self.left_out),
                "revisions": [{**_revision_json(c), "state": LEFT_OUT} for c in self.left_out],
            },
            "summary": {
                "planned": len(self.items),
                "created": self.count(CREATED),
                "already_there": self.count(EXISTING),
                "new": self.count(NEW),
                "failed": self.count(FAILED),
                "left_out": len(self.left_out),
            },
        }

    def render_table(self, width: int | None = None) -> str:
        """A table people can read: one row a revision, oldest first, left-out ones included.

        `width`: the terminal's columns, or None (a pipe) for no limit. Rows are fitted to it by
        shrinking, then dropping, the columns a reader can do without; the commit, the task slug and
        the state are never cut, so a table narrower than those three is wider than `width`. The dry
        run adds a WORKERS column and, below the table, each file a task would refuse."""
        previews = any(item.preview is not None for item in self.items)
        header = _HEADER[:4] + ("WORKERS",) * previews + _HEADER[4:]
        table = [tuple((name,) for name in header), *self._rows(previews)]
        natural = [max(len(row[i][0]) for row in table) for i in range(len(header))]
        shown = _fit(header, natural, width)
        lines = [dry_run_line(self.dry_run_image)] if self.dry_run_image is not None else []
        lines += [
            f"Repository {self.repository_url}, ref {self.ref or '(none)'}, target {self.target[:10]}",
            f"Selection: {self.selection.mode}"
            + (f", paths {', '.join(self.paths)}" if self.paths else "")
            + (f", {len(self.left_out)} left out by MAX_REVISIONS" if self.left_out else ""),
            *(f"Warning: {w}" for w in self.selection.warnings),
        ]
        lines = [line for text in lines for line in _wrap(text, width)]
        lines.append("")
        lines += [_SEP.join(_cell(row[i], w).ljust(w) for i, w in shown.items()).rstrip() for row in table]
        lines.append("")
        lines += _wrap(
            f"{len(self.items)} revision(s) planned: {self.count(NEW)} new, {self.count(CREATED)} created, "
            f"{self.count(EXISTING)} already there, {len(self.left_out)} left out",
            width,
        )
        return "\n".join(lines + self._refused(width))

    def _rows(self, previews: bool) -> list[tuple[tuple[str, ...], ...]]:
        """Each row's cells, each cell as alternatives (most telling first); left-out revisions first."""
        rows = [(c, task_slug(c.hash), LEFT_OUT, None) for c in self.left_out]
        rows += [(item.revision, item.slug, item.state, item.preview) for item in self.items]
        return [
            (
                (c.hash[:10],),
                (c.date[:10],),
                (clip(c.author, 20),),
                (clip(c.summary, 50),),
                *([preview.cell() if preview else ("",)] if previews else []),
                (slug,),
                (state,),
            )
            for c, slug, state, preview in rows
        ]

    def _refused(self, width: int | None) -> list[str]:
        """One line a file a planned revision's task would refuse; such a task registers nothing."""
        refused = [
            (item.revision.hash[:10], worker)
            for item in self.items
            if item.preview is not None
            for worker in item.preview.invalid
        ]
        if not refused:
            return []
        revisions = len({short for short, _ in refused})
        heading = (
            f"{len(refused)} invalid file(s) in {revisions} revision(s): their tasks would register nothing "
            "and fail (exit status 2)"
        )
        lines = ["", *_wrap(heading, width)]
        for short, worker in refused:
            lines += _wrap(f"{short} {worker.file}: {worker.error}", width)
        return lines


def dry_run_line(image: str) -> str:
    """The dry run's first line, in its output and its log."""
    return f"dry run: nothing was created; the tasks would run {image}"


def build_plan(
    *,
    repository_url: str,
    ref: str | None,
    target: str,
    before: str | None,
    paths: list[str],
    selection: Selection,
    existing: dict[str, str],
) -> Plan:
    """One item per chosen revision; those whose slug is in `existing` (slug → task ID) are already there."""
    plan = Plan(repository_url, ref, target, before, paths, selection)
    for commit in selection.chosen:
        slug = task_slug(commit.hash)
        if slug in existing:
            plan.items.append(PlanItem(commit, slug, EXISTING, existing[slug]))
        else:
            plan.items.append(PlanItem(commit, slug))
    return plan


def _revision_json(commit: Commit) -> dict[str, str]:
    return {"hash": commit.hash, "summary": commit.summary, "author": commit.author, "date": commit.date}


def clip(text: str, width: int) -> str:
    """`text` in at most `width` characters, ending with `…` when it was cut (a reader must see it)."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 0 else ""


_HEADER = ("COMMIT", "DATE", "AUTHOR", "SUMMARY", "TASK SLUG", "STATE")
_SEP = "  "
# The columns that shrink to fit a terminal, in the order they give way, each down to a width still
# worth reading (the summary, the most telling, twice: first to a readable width, last to a glimpse;
# the dry run's workers last, to what "2 (1 invalid)" needs, then to "1 invalid"); then the columns
# dropped whole, in this order, if the table is still too wide. What was taken is given back, the last taken
# first, when a dropped column freed more room than was missing.
_SHRINK = (("SUMMARY", 24), ("AUTHOR", 8), ("WORKERS", 13), ("SUMMARY", 12), ("WORKERS", 9))
_DROP = ("DATE", "AUTHOR", "SUMMARY", "WORKERS")


def _fit(header: tuple[str, ...], natural: list[int], width: int | None) -> dict[int, int]:
    """Column index → width, for the columns shown, so that a row fits `width` if it can."""
    shown = dict(enumerate(natural))
    if width is None:
        return shown
    index = {name: i for i, name in enumerate(header)}

    def over() -> int:
        return sum(shown.values()) + len(_SEP) * (len(shown) - 1) - width

    taken: list[tuple[int, int]] = []
    for name, narrowest in _SHRINK:
        if name in index:
            column = index[name]
            cut = max(0, min(over(), shown[column] - narrowest))
            shown[column] -= cut
            taken.append((column, cut))
    for name in _DROP:
        if over() > 0 and name in index:
            del shown[index[name]]
    for column, cut in reversed(taken):
        if column in shown:
            shown[column] += max(0, min(-over(), cut))
    return shown


def _cell(alternatives: tuple[str, ...], width: int) -> str:
    """The first alternative that fits `width`, else the last one clipped."""
    for text in alternatives:
        if len(text) <= width:
            return text
    return clip(alternatives[-1], width)


def _wrap(text: str, width: int | None) -> list[str]:
    """A line of prose wrapped to `width` (continuations indented); a URL or hash is never split."""
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(
        text, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    ) or [text]
