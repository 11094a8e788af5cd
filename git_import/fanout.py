"""The fan-out: one `CreateTask` per planned revision, `FAN_OUT_CONCURRENCY` at a time.

The threads share one schedule of tries, ordered by the time each may be sent. A revision whose try
failed for a transient reason (5xx, 429, a dropped connection) goes back into the schedule after its
backoff (or the server's `Retry-After`), and the thread takes the next revision meanwhile: a retry
never holds a thread asleep. Backoff stays polite: each revision waits between its own tries, has at
most `RETRY_ATTEMPTS` of them, and when 8 tries in a row fail (twice `FAN_OUT_CONCURRENCY` if more),
every thread waits that backoff too, so a server failing every call is not hammered.

A refused token (401/403) stops the fan-out at once. So does a stop signal: no new try starts, the
tries in flight get a few seconds to end, and what happened to each revision stays in the plan.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from git_import import logs, stop
from git_import.arkindex import APIConfigError, ArkindexAPI, TransientAPIError
from git_import.errors import FatalError
from git_import.rules.plan import CREATED, EXISTING, FAILED, NEW, Plan, PlanItem

logger = logging.getLogger(__name__)

GRACE = 5.0  # seconds the tries in flight get to end after a stop signal
DOWN_STREAK = 8  # failed tries in a row (at least; twice the concurrency if more) that pause the pool


@dataclass(order=True)
class _Try:
    ready: float  # monotonic time from which it may be sent
    order: int  # plan order among tries ready at once
    item: PlanItem = field(compare=False)
    failed: int = field(default=0, compare=False)  # tries of this revision that failed so far


class FanOut:
    def __init__(
        self, api: ArkindexAPI, plan: Plan, bodies: dict[str, dict[str, Any]], concurrency: int
    ) -> None:
        self.api = api
        self.bodies = bodies
        self.concurrency = concurrency
        self.todo = [item for item in plan.items if item.state == NEW]
        self.config_error: APIConfigError | None = None
        self._schedule = [_Try(0.0, n, item) for n, item in enumerate(self.todo)]
        self._order = itertools.count(len(self._schedule))
        self._cond = threading.Condition()
        self._unfinished = len(self.todo)
        self._in_flight = 0
        self._streak = 0  # transient failures in a row, whatever the revision
        # How many in a row mean "the server is down": a streak that unlucky tries almost never make.
        # With 40% of calls failing at random, 4 in a row come once in ~40 tries, 8 once in ~1,500.
        self.down_streak = max(DOWN_STREAK, 2 * concurrency)
        self._pause_until = 0.0
        self._stopping = False
        self._last_report = time.monotonic()

    # --- the main thread ----------------------------------------------------------------------
    def run(self) -> None:
        """Create every task; raises the refused token's error, or :class:`stop.Stopped` after a signal."""
        if not self.todo:
            return
        for n in range(min(self.concurrency, len(self.todo))):
            threading.Thread(target=self._work, name=f"fan-out-{n}", daemon=True).start()
        try:
            with self._cond:
                while self._unfinished and not (self._stopping and not self._in_flight):
                    self._cond.wait()
                stop.check()  # a signal that arrived while a thread held the lock
        except stop.Stopped:
            self._stop_and_drain()
            raise
        logger.info("%s", self.progress())
        if self.config_error is not None:
            raise self.config_error

    def _stop_and_drain(self) -> None:
        """No new try; the ones in flight get GRACE seconds to end, so that their outcome is recorded."""
        deadline = time.monotonic() + GRACE
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def progress(self) -> str:
        there = sum(1 for item in self.todo if item.state in (CREATED, EXISTING))
        failed = sum(1 for item in self.todo if item.state == FAILED)
        line = f"created {there}/{len(self.todo)}"
        return f"{line} ({failed} failed)" if failed else line

    # --- the pool's threads -------------------------------------------------------------------
    def _work(self) -> None:
        while (attempt := self._next()) is not None:
            try:
                self._send(attempt)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    if self._stopping:  # only a stopping pool waits for the tries in flight
                        self._cond.notify_all()

    def _next(self) -> _Try | None:
        """The next try whose time has come, waiting for it; None when there is nothing left to do."""
        with self._cond:
            while not self._stopping and self._schedule:
                wait = max(self._schedule[0].ready, self._pause_until) - time.monotonic()
                if wait <= 0:
                    self._in_flight += 1
                    return heapq.heappop(self._schedule)
                self._cond.wait(wait)
            return None

    def _send(self, attempt: _Try) -> None:
        item = attempt.item
        try:
            task, created = self.api.create_task(self.bodies[item.slug])
        except TransientAPIError as exc:
            self._retry_later(attempt, exc)
            return
        except APIConfigError as exc:
            # The token or its rights are wrong: every other try would fail the same way.
            item.state, item.error = FAILED, exc.message
            with self._cond:
                self.config_error = self.config_error or exc
                self._stopping = True
            self._finished()
            return
        except FatalError as exc:
            item.state, item.error = FAILED, exc.message
            logger.error("could not create task %s for revision %s: %s", item.slug, item.revision.hash, exc)
            self._finished()
            return
        self._succeeded(item, task, created)

    def _succeeded(self, item: PlanItem, task: dict[str, Any] | None, created: bool) -> None:
        item.task_id = str(task["id"]) if task else None
        short = item.revision.hash[:10]
        fields = logs.fields(revision=item.revision.hash, slug=item.slug, task_id=item.task_id)
        if created:
            item.state = CREATED
            logger.info("revision %s: created task %s (%s)", short, item.slug, item.task_id, extra=fields)
        else:
            item.state = EXISTING
            logger.info(
                "revision %s: task %s already exists (a retry of ours, or another run): skipped",
                short,
                item.slug,
                extra=fields,
            )
        with self._cond:
            self._streak = 0
        self._finished()

    def _retry_later(self, attempt: _Try, exc: TransientAPIError) -> None:
        policy = self.api.policy
        failed = attempt.failed + 1
        if failed >= policy.attempts:
            attempt.item.state = FAILED
            attempt.item.error = f"{exc.message} (still failing after {failed} tries)"
            logger.error("could not create task %s: %s", attempt.item.slug, attempt.item.error)
            self._finished()
            return
        delay = exc.retry_after if exc.retry_after is not None else policy.delay(failed)
        policy.note_retry(f"creating task {attempt.item.slug}", failed, exc.message, delay)
        now = time.monotonic()
        with self._cond:
            self._streak += 1
            if self._streak >= self.down_streak:
                # Every recent try failed, whatever the revision: the server is down, not unlucky.
                self._pause_until = max(self._pause_until, now + delay)
            heapq.heappush(self._schedule, _Try(now + delay, next(self._order), attempt.item, failed))
            self._cond.notify_all()

    def _finished(self) -> None:
        with self._cond:
            self._unfinished -= 1
            now = time.monotonic()
            report = now - self._last_report >= logs.PROGRESS_INTERVAL and self._unfinished
            if report:
                self._last_report = now
            # The main thread waits for the last revision or a stop; no thread waits for the others.
            # Waking it for each of them cost a GIL hand-off per revision.
            if not self._unfinished or self._stopping:
                self._cond.notify_all()
        if report and not self._stopping:
            logger.info("%s", self.progress())
