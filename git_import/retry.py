"""The one retry policy, for git and for the Arkindex API (tenacity runs it).

- At most `attempts` tries; only a failure its caller calls transient is tried again. Which failures
  are transient stays with each layer: :attr:`GitError.transient` for git; 5xx, 429 and dropped
  connections for the API (:mod:`git_import.arkindex`). Authentication and validation never are.
- Between two tries, exponential backoff with "equal jitter" (the name the AWS Architecture Blog's
  "Exponential Backoff And Jitter" gives it): after the n-th failed try the wait is drawn uniformly in
  [h/2, h], where h = min(MAX_DELAY, base_delay * 2**(n-1)). The half that is sure to grow gives a
  failing server some rest; the random half spreads the tries of concurrent callers (the fan-out's
  threads). A server's `Retry-After` (seconds or an HTTP date) replaces it, up to MAX_RETRY_AFTER.
- Each retry is counted (the trigger's closing line prints the API's count) and logged as one
  warning line: "<what> failed (try N of M): <reason>; retrying in X s".

A failure that is not retried, or the last one, is raised unchanged: the caller says what it means.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from git_import import stop
from git_import.git.process import GitError

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_DELAY = 30.0  # seconds: the longest backoff wait
MAX_RETRY_AFTER = 4 * MAX_DELAY  # seconds: the longest wait a server's Retry-After gets


def retry_after_seconds(value: str | None) -> float | None:
    """The wait a `Retry-After` header asks for, within [0, MAX_RETRY_AFTER]; None when there is none
    or it cannot be read."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, with no claim about the local time zone
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class RetryPolicy:
    """Tries of actions, and the count of retries, shared by the threads of one client."""

    def __init__(
        self, attempts: int, base_delay: float, *, sleep: Callable[[float], None] = stop.sleep
    ) -> None:
        self.attempts = max(1, attempts)
        self.base_delay = max(0.0, base_delay)
        self.retries = 0
        self._sleep = sleep  # a stop asked by a signal ends the wait
        self._lock = threading.Lock()

    def delay(self, failed: int) -> float:
        """The wait after the `failed`-th failed try: equal jitter, a sure half and a random half."""
        high = min(MAX_DELAY, self.base_delay * 2 ** (failed - 1))
        return random.uniform(high / 2, high)

    def note_retry(self, what: str, failed: int, reason: str, delay: float) -> None:
        """Count one retry and say it, the same way for every caller."""
        with self._lock:
            self.retries += 1
        logger.warning(
            "%s failed (try %d of %d): %s; retrying in %.1f s", what, failed, self.attempts, reason, delay
        )

    def call(
        self,
        what: str,
        action: Callable[[], T],
        *,
        transient: Callable[[BaseException], bool],
        describe: Callable[[BaseException], str] = str,
        retry_after: Callable[[BaseException], str | None] | None = None,
        before_retry: Callable[[], object] | None = None,
    ) -> T:
        """`action()`, tried again after a `transient` failure while tries are left.

        `describe`: the reason a warning gives; `retry_after`: the failure's Retry-After header, if
        any; `before_retry`: called before each wait (to clear what the failed try left)."""

        def wait(state: RetryCallState) -> float:
            asked = retry_after and retry_after_seconds(retry_after(_failure(state)))
            return asked if asked is not None else self.delay(state.attempt_number)

        def before_sleep(state: RetryCallState) -> None:
            delay = state.next_action.sleep if state.next_action else 0.0
            self.note_retry(what, state.attempt_number, describe(_failure(state)), delay)
            if before_retry is not None:
                before_retry()

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception(transient),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(action)


def _failure(state: RetryCallState) -> BaseException:
    assert state.outcome is not None
    exc = state.outcome.exception()
    assert exc is not None
    return exc


def with_retries(
    action: Callable[[], T],
    *,
    attempts: int,
    base_delay: float,
    what: str,
    cleanup: Callable[[], object] | None = None,
) -> T:
    """`action()` under the policy, for git: a transient :class:`GitError` is tried again, after
    `cleanup()`; when every try failed, one error says how many did, with the last one's reason."""
    policy = RetryPolicy(attempts, base_delay)
    try:
        return policy.call(
            what,
            action,
            transient=lambda exc: isinstance(exc, GitError) and exc.transient,
            describe=lambda exc: exc.message if isinstance(exc, GitError) else str(exc),
            before_retry=cleanup,
        )
    except GitError as exc:
        if not exc.transient:
            raise
        raise GitError(
            f"{what} failed {policy.attempts} times; last error: {exc.message}",
            hint="the Git server or the network is failing: retry the task later",
            command=exc.command,
            status=exc.status,
            tail=exc.tail,
        ) from None
