"""Settings read from the environment that Ponos gives the task (and that a developer can set by hand).

Every setting is an environment variable named after the field in upper case. ``settings_reference()``
renders the table that the README's settings reference holds; a test keeps the two in step.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from git_import.errors import ConfigError
from git_import.redact import register_secret
from git_import.rules.urls import NULL_SHA, is_full_hash

# How to fix each setting, used in the one-line error a wrong value gets.
_FIXES: dict[str, str] = {
    "PONOS_PROCESS": "set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the UUID of the process running this task",
    "PONOS_TASK": "set PONOS_TASK to the UUID of the running task",
    "REPOSITORY_URL": "set REPOSITORY_URL to the repository's HTTP(S) or SSH clone URL, without credentials",
    "REPOSITORY_BEFORE": "give the full 40-character hash of the commit before the push, or leave it empty",
    "REPOSITORY_AFTER": "give the full 40-character hash of the pushed commit, or leave it empty",
    "REPOSITORY_REVISION": "give the full 40-character hash of the commit to import",
    "MAX_REVISIONS": "set MAX_REVISIONS to a whole number of at least 1",
    "FAN_OUT_CONCURRENCY": "set FAN_OUT_CONCURRENCY to a whole number from 1 to 32",
    "RETRY_ATTEMPTS": "set RETRY_ATTEMPTS to a whole number from 1 to 100",
    "RETRY_BASE_DELAY": "set RETRY_BASE_DELAY to a number of seconds from 0 to 30",
    "GIT_STALL_TIMEOUT": "set GIT_STALL_TIMEOUT to a whole number of seconds, at least 1",
    "GIT_TIMEOUT": "set GIT_TIMEOUT to a whole number of seconds, at least 1",
}


# Prefixes of every environment variable the tool reads (tests and the benchmark clear them).
SETTING_PREFIXES = (
    "PONOS_",
    "ARKINDEX_",
    "REPOSITORY_",
    "GIT_",
    "IMPORT_",
    "WORKER_",
    "MAX_",
    "FAN_",
    "RETRY_",
    "LOG_",
)

# field → (lowest, highest or None, unit in the message) of the numeric settings
_BOUNDS: dict[str, tuple[float, float | None, str]] = {
    "max_revisions": (1, None, ""),
    "fan_out_concurrency": (1, 32, ""),
    "retry_attempts": (1, 100, ""),
    "retry_base_delay": (0, 30, " seconds"),
    "git_stall_timeout": (1, None, " second"),
    "git_timeout": (1, None, " second"),
}


class Settings(BaseSettings):
    """Every environment variable the tool reads."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    # --- Ponos -------------------------------------------------------------------------------
    ponos_process: uuid.UUID | None = Field(
        None,
        validation_alias=AliasChoices("PONOS_PROCESS", "ARKINDEX_PROCESS_ID"),
        description="UUID of the process this task belongs to; `ARKINDEX_PROCESS_ID` is read as the same value.",
    )
    ponos_task: uuid.UUID | None = Field(
        None,
        validation_alias="PONOS_TASK",
        description="UUID of the running task: the parent of every task the trigger creates.",
    )
    ponos_workflow: str | None = Field(
        None,
        validation_alias="PONOS_WORKFLOW",
        description="No longer provided by the Ponos agent; when it is the only process setting, the tool says so.",
    )
    ponos_data: Path = Field(
        Path("/data"),
        validation_alias="PONOS_DATA",
        description="Data folder; files under `$PONOS_DATA/current/` are uploaded as the task's artifacts.",
    )
    # --- Arkindex API ------------------------------------------------------------------------
    arkindex_api_url: str | None = Field(
        None, validation_alias="ARKINDEX_API_URL", description="Base URL of the Arkindex instance."
    )
    arkindex_task_token: SecretStr | None = Field(
        None,
        validation_alias="ARKINDEX_TASK_TOKEN",
        description="The task's own token (`Authorization: Ponos …`), set by Ponos: used for `RetrieveProcess` and "
        "`CreateTask`, and for the worker operations when `ARKINDEX_API_TOKEN` is not set.",
    )
    arkindex_api_token: SecretStr | None = Field(
        None,
        validation_alias="ARKINDEX_API_TOKEN",
        description="A user API token (`Authorization: Token …`): used for the worker operations (real instances may "
        "refuse a task token there: set it in the process environment), and for everything outside Ponos.",
    )
    arkindex_api_auth_scheme: str | None = Field(
        None,
        validation_alias="ARKINDEX_API_AUTH_SCHEME",
        description="Overrides the scheme sent with `ARKINDEX_API_TOKEN` (or with the task token when it is the only "
        "token), as `arkindex-client` does.",
    )
    arkindex_api_schema_url: str | None = Field(
        None,
        validation_alias="ARKINDEX_API_SCHEMA_URL",
        description="URL or local path of the OpenAPI schema, instead of the instance's own.",
    )
    # --- Repository --------------------------------------------------------------------------
    repository_url: str | None = Field(
        None,
        validation_alias="REPOSITORY_URL",
        description="Clone URL (`https://`, `http://`, `ssh://` or `user@host:path`), without credentials. Required.",
    )
    repository_token: SecretStr | None = Field(
        None,
        validation_alias="REPOSITORY_TOKEN",
        description="Token sent as the HTTP password for a private repository; never written anywhere.",
    )
    repository_username: str = Field(
        "oauth2", validation_alias="REPOSITORY_USERNAME", description="HTTP user name sent with the token."
    )
    repository_ref: str | None = Field(
        None,
        validation_alias="REPOSITORY_REF",
        description="Branch, tag or full ref to import; default: the remote's HEAD.",
    )
    repository_before: str | None = Field(
        None,
        validation_alias="REPOSITORY_BEFORE",
        description="Commit before the push (forty zeros or empty for a new branch: the target alone).",
    )
    repository_after: str | None = Field(
        None,
        validation_alias="REPOSITORY_AFTER",
        description="Pushed commit; default: the tip of `REPOSITORY_REF`.",
    )
    repository_paths: str | None = Field(
        None,
        validation_alias="REPOSITORY_PATHS",
        description="Comma-separated pathspecs: keep only commits whose first-parent change touches them.",
    )
    repository_event: Path | None = Field(
        None,
        validation_alias="REPOSITORY_EVENT",
        description="Path of a GitLab or GitHub push webhook payload (JSON) giving the URL, ref, `before` and "
        "`after`; explicit `REPOSITORY_*` settings win over it.",
    )
    repository_revision: str | None = Field(
        None,
        validation_alias="REPOSITORY_REVISION",
        description="Commit imported by a per-revision task (set by the trigger on each task it creates).",
    )
    repository_allow_local: bool = Field(
        False,
        validation_alias="REPOSITORY_ALLOW_LOCAL",
        description="Set to 1 to allow local paths and `file://` URLs (for development only).",
    )
    # --- Fan-out and import ------------------------------------------------------------------
    max_revisions: int = Field(
        50,
        validation_alias="MAX_REVISIONS",
        description="Most revisions one trigger imports; the newest are kept.",
    )
    import_image: str = Field(
        "arkindex-git-import:latest",
        validation_alias="IMPORT_IMAGE",
        description="Docker image of the per-revision tasks (baked into the image at build time).",
    )
    worker_image_template: str = Field(
        "{slug}:{hash}",
        validation_alias="WORKER_IMAGE_TEMPLATE",
        description="`docker_image_iid` of each worker version; placeholders `{slug}`, `{hash}`, `{short_hash}`, `{ref}`.",
    )
    worker_update: bool = Field(
        True,
        validation_alias="WORKER_UPDATE",
        description="Whether a revision task updates a worker's name, type and description; the trigger sets 0 "
        "on every task but the newest revision's, since Ponos may run them in any order.",
    )
    fan_out_concurrency: int = Field(
        4,
        validation_alias="FAN_OUT_CONCURRENCY",
        description="How many `CreateTask` calls run at once.",
    )
    # --- Robustness --------------------------------------------------------------------------
    git_stall_timeout: int = Field(
        60,
        validation_alias="GIT_STALL_TIMEOUT",
        description="Seconds a clone or fetch may transfer nothing before it is cut off and retried.",
    )
    git_timeout: int = Field(
        1800,
        validation_alias="GIT_TIMEOUT",
        description="Seconds one git command may run in all.",
    )
    retry_attempts: int = Field(
        5,
        validation_alias="RETRY_ATTEMPTS",
        description="Tries for a transient failure (network, 5xx, 429) of git or the API before giving up.",
    )
    retry_base_delay: float = Field(
        1.0,
        validation_alias="RETRY_BASE_DELAY",
        description="First backoff delay in seconds; it doubles each try, with jitter, up to 30 s.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        validation_alias="LOG_FORMAT",
        description="`text` for plain lines, `json` for one JSON object a line.",
    )

    @field_validator("repository_before", "repository_after", "repository_revision", mode="before")
    @classmethod
    def _full_hash(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if not is_full_hash(value):
                raise ValueError("not a full 40-character commit hash")
        return value

    @field_validator(*_BOUNDS)
    @classmethod
    def _within_bounds(cls, value: float, info: Any) -> float:
        low, high, unit = _BOUNDS[info.field_name]
        if high is None and value < low:
            raise ValueError(f"must be at least {low}{unit}")
        if high is not None and not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}{unit}")
        return value

    # --- Derived values ----------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        return [p.strip() for p in (self.repository_paths or "").split(",") if p.strip()]

    @property
    def before(self) -> str | None:
        """The push's `before` commit, or None for a new branch."""
        if self.repository_before in (None, NULL_SHA):
            return None
        return self.repository_before

    @property
    def token(self) -> str | None:
        return self.repository_token.get_secret_value() if self.repository_token else None

    @property
    def artifacts_dir(self) -> Path:
        return self.ponos_data / "current"

    def require_process(self) -> tuple[uuid.UUID, uuid.UUID]:
        """The process and task IDs, or a clear error when they are missing."""
        if self.ponos_process is None:
            if self.ponos_workflow:
                raise ConfigError(
                    "PONOS_WORKFLOW is set but PONOS_PROCESS is not: the Ponos agent no longer provides "
                    "PONOS_WORKFLOW since Arkindex merged workflows into processes",
                    hint="set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the process UUID, or update the agent",
                )
            raise ConfigError("PONOS_PROCESS is not set", hint=_FIXES["PONOS_PROCESS"])
        if self.ponos_task is None:
            raise ConfigError("PONOS_TASK is not set", hint=_FIXES["PONOS_TASK"])
        return self.ponos_process, self.ponos_task

    def require_api(self) -> None:
        if not self.arkindex_api_url:
            raise ConfigError(
                "ARKINDEX_API_URL is not set", hint="set it to the base URL of the Arkindex instance"
            )
        if not (self.arkindex_task_token or self.arkindex_api_token):
            raise ConfigError(
                "neither ARKINDEX_TASK_TOKEN nor ARKINDEX_API_TOKEN is set",
                hint="Ponos sets ARKINDEX_TASK_TOKEN; by hand, set ARKINDEX_API_TOKEN",
            )

    def require_repository(self) -> str:
        if not self.repository_url:
            raise ConfigError("REPOSITORY_URL is not set", hint=_FIXES["REPOSITORY_URL"])
        return self.repository_url


def _env_name(field: str) -> str:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return str(alias or field).upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; a wrong value raises one clear :class:`ConfigError`."""
    try:
        settings = Settings(**overrides)
        if settings.repository_event is not None:
            from git_import.events import read_event

            implied = read_event(settings.repository_event)
            missing = {
                k: v for k, v in implied.items() if getattr(settings, k) is None and k not in overrides
            }
            if missing:
                settings = Settings(**overrides, **missing)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = _env_name(field) if field in Settings.model_fields else field.upper()
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "uuid_parsing":
            reason = "is not a valid UUID"
        raise ConfigError(f"{name}: {reason}", hint=_FIXES.get(name, f"correct {name} or unset it")) from None
    for secret in (settings.repository_token, settings.arkindex_task_token, settings.arkindex_api_token):
        if secret is not None:
            register_secret(secret.get_secret_value())
    return settings


SECRET_FIELDS = {"repository_token", "arkindex_task_token", "arkindex_api_token"}


def settings_reference() -> str:
    """The README's settings reference, as a Markdown table generated from the model."""
    lines = ["| variable | default | secret | meaning |", "|---|---|---|---|"]
    for field, info in Settings.model_fields.items():
        default = info.default
        shown = "—" if default is None else f"`{default}`"
        if field == "ponos_process":
            name = "`PONOS_PROCESS` / `ARKINDEX_PROCESS_ID`"
        else:
            name = f"`{_env_name(field)}`"
        secret = "yes" if field in SECRET_FIELDS else "no"
        lines.append(f"| {name} | {shown} | {secret} | {info.description} |")
    return "\n".join(lines)
