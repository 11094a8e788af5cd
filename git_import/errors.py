"""One error type that carries an actionable message to the top, where it is printed once."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


class FatalError(Exception):
    """A failure the user must act on. ``str()`` is the whole message: what, where, how to fix."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None, settings: tuple[str, ...] = ()) -> None:
        self.message = message
        self.hint = hint
        self.settings = settings  # the settings it names, for the log line's `setting` field
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(FatalError):
    """A wrong setting or input: nothing was created, exit status 2."""

    exit_code = EXIT_CONFIG
