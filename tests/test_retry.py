"""The one retry policy (`git_import.retry`): which failures are tried again, how often, after what wait.

The waits are recorded instead of slept (the policy takes its sleep function, as tenacity does); the
trigger and the revision task run it for real against a faulty Git server and API in
test_reliability.py.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable

import pytest

from git_import.git.process import GitError
from git_import.retry import MAX_DELAY, MAX_RETRY_AFTER, RetryPolicy, retry_after_seconds, with_retries


class Boom(Exception):
    def __init__(self, message: str = "boom", *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


def failing(times: int, answer: str = "done", **boom: bool) -> tuple[Callable[[], str], list[Boom]]:
    """An action that raises a new Boom on each of its first `times` calls, then answers; and the
    exceptions it raised, in order."""
    raised: list[Boom] = []

    def action() -> str:
        if len(raised) < times:
            raised.append(Boom(f"boom {len(raised) + 1}", **boom))
            raise raised[-1]
        return answer

    return action, raised


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, Boom) and exc.transient


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_transient_failures_are_retried_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    waits: list[float] = []
    policy = RetryPolicy(5, 0.0, sleep=waits.append)
    action, raised = failing(2)

    assert policy.call("creating task x", action, transient=is_transient) == "done"

    assert len(raised) == 2 and policy.retries == 2 and waits == [0.0, 0.0]
    assert warnings(caplog) == [
        "creating task x failed (try 1 of 5): boom 1; retrying in 0.0 s",
        "creating task x failed (try 2 of 5): boom 2; retrying in 0.0 s",
    ]


def test_tries_are_bounded_and_the_last_failure_is_raised_unchanged() -> None:
    policy = RetryPolicy(3, 0.0, sleep=lambda _: None)
    action, raised = failing(100)

    with pytest.raises(Boom) as caught:
        policy.call("x", action, transient=is_transient)

    assert len(raised) == 3 and caught.value is raised[-1]
    assert policy.retries == 2


def test_a_failure_that_is_not_transient_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    waits: list[float] = []
    policy = RetryPolicy(5, 0.0, sleep=waits.append)
    action, raised = failing(1, transient=False)

    with pytest.raises(Boom) as caught:
        policy.call("x", action, transient=is_transient)

    assert caught.value is raised[0] and len(raised) == 1
    assert policy.retries == 0 and waits == [] and warnings(caplog) == []


def test_one_try_at_least() -> None:
    action, raised = failing(100)
    with pytest.raises(Boom):
        RetryPolicy(0, 0.0).call("x", action, transient=is_transient)
    assert len(raised) == 1


def test_backoff_doubles_up_to_the_cap_with_equal_jitter() -> None:
    """After the n-th failed try the wait is uniform in [h/2, h], h = min(30 s, base * 2**(n-1))."""
    base, attempts = 1.0, 9
    rounds: list[list[float]] = []
    for _ in range(200):
        waits: list[float] = []
        with pytest.raises(Boom):
            RetryPolicy(attempts, base, sleep=waits.append).call("x", failing(100)[0], transient=is_transient)
        rounds.append(waits)
    for n in range(1, attempts):
        high = min(MAX_DELAY, base * 2 ** (n - 1))
        drawn = [waits[n - 1] for waits in rounds]
        assert all(high / 2 <= wait <= high for wait in drawn), (n, min(drawn), max(drawn))
        # Jitter: the draws spread over the range (200 draws all in one tenth of it: p < 1e-19).
        assert min(drawn) < high * 0.6 and max(drawn) > high * 0.9, (n, min(drawn), max(drawn))


def test_retries_are_counted_across_threads() -> None:
    policy = RetryPolicy(3, 0.0, sleep=lambda _: None)
    threads = [
        threading.Thread(target=policy.call, args=("x", failing(1)[0]), kwargs={"transient": is_transient})
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert policy.retries == 8


# --- Retry-After ------------------------------------------------------------------------------------


def header_value(header: str) -> str:
    """The header as given, or `date+N`: an HTTP date N seconds from now (made when the test runs)."""
    if header.startswith("date"):
        return email.utils.formatdate(time.time() + float(header[4:]), usegmt=True)
    return header


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("7", 7.0, 7.0),
        ("0.5", 0.5, 0.5),
        ("100000", MAX_RETRY_AFTER, MAX_RETRY_AFTER),  # bounded
        ("-3", 0.0, 0.0),
        ("date+20", 15.0, 20.0),
        ("date-60", 0.0, 0.0),  # a date passed already
    ],
)
def test_retry_after_is_honoured_within_bounds(
    header: str, low: float, high: float, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []
    policy = RetryPolicy(3, 0.01, sleep=waits.append)
    action, _ = failing(1)

    value = header_value(header)
    policy.call("x", action, transient=is_transient, retry_after=lambda exc: value)

    (wait,) = waits
    assert low <= wait <= high
    assert warnings(caplog) == [f"x failed (try 1 of 3): boom 1; retrying in {wait:.1f} s"]


@pytest.mark.parametrize("header", [None, "", "soon", "Fri, 99 Foo 2026"])
def test_no_readable_retry_after_means_backoff(header: str | None) -> None:
    assert retry_after_seconds(header) is None
    waits: list[float] = []
    RetryPolicy(3, 0.01, sleep=waits.append).call(
        "x", failing(1)[0], transient=is_transient, retry_after=lambda exc: header
    )
    assert 0.005 <= waits[0] <= 0.01


# --- git's use of the policy ----------------------------------------------------------------------


def test_git_retries_transient_errors_after_cleaning_up_then_says_how_many_tries_failed() -> None:
    cleanups: list[int] = []
    tries: list[GitError] = []

    def clone() -> None:
        tries.append(
            GitError("cloning main failed: HTTP 503", transient=True, status=128, tail=("HTTP 503",))
        )
        raise tries[-1]

    with pytest.raises(GitError) as caught:
        with_retries(
            clone,
            attempts=3,
            base_delay=0.0,
            what="cloning the repository",
            cleanup=lambda: cleanups.append(len(tries)),
        )

    assert len(tries) == 3 and cleanups == [1, 2]  # before each new try, not after the last
    error = caught.value
    assert error.message == "cloning the repository failed 3 times; last error: cloning main failed: HTTP 503"
    assert "retry the task later" in str(error)
    assert (error.status, error.tail) == (128, ("HTTP 503",))


def test_git_errors_that_are_not_transient_are_raised_unchanged() -> None:
    refused = GitError("cloning main: the Git server refused access")
    cleanups: list[None] = []

    def clone() -> None:
        raise refused

    with pytest.raises(GitError) as caught:
        with_retries(clone, attempts=5, base_delay=0.0, what="cloning", cleanup=lambda: cleanups.append(None))

    assert caught.value is refused and cleanups == []


def test_other_exceptions_are_not_git_failures_to_retry() -> None:
    action, raised = failing(1)
    with pytest.raises(Boom):
        with_retries(action, attempts=5, base_delay=0.0, what="cloning")
    assert len(raised) == 1
