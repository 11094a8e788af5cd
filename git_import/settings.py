"""Settings read from the environment that Ponos gives the task (and that a developer can set by hand).

Every setting is an environment variable named after the field in upper case. Pydantic checks each value
(the shared rules of `rules.env` and `rules.urls`, bounds as `Field(ge=, le=)`); a push event file
(REPOSITORY_EVENT) is a source of its own, below the environment. A command then asks for what it needs
(`check_required`): every missing or invalid setting is named in one error line. ``settings_reference()``
renders the table that the README's settings reference holds; a test keeps the two in step.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from git_import.errors import ConfigError
from git_import.redact import SECRET_SETTINGS, register_secret
from git_import.rules import env
from git_import.rules.urls import check_pathspecs, check_ref, check_repository_url

# How to fix each setting, used in the one-line error a wrong (or missing) value gets. No ';' in them:
# it separates the problems when several are named in one line.
_FIXES: dict[str, str] = {
    "PONOS_PROCESS": "set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the UUID of the process running this task",
    "PONOS_TASK": "set PONOS_TASK to the UUID of the running task",
    "ARKINDEX_API_URL": "set ARKINDEX_API_URL to the base URL of the Arkindex instance",
    "ARKINDEX_TASK_TOKEN": "Ponos sets ARKINDEX_TASK_TOKEN: outside Ponos, set ARKINDEX_API_TOKEN to a user API token",
    "REPOSITORY_URL": "set REPOSITORY_URL to the repository's HTTP(S) or SSH clone URL, without credentials",
    "REPOSITORY_BEFORE": "give the full 40-character hash of the commit before the push, or leave it empty",
    "REPOSITORY_AFTER": "give the full 40-character hash of the pushed commit, or leave it empty",
    "REPOSITORY_REVISION": "give the full 40-character hash of the commit to import",
    "REPOSITORY_ALLOW_LOCAL": "set REPOSITORY_ALLOW_LOCAL to 1 or 0",
    "REPOSITORY_SSH_KEY": "set REPOSITORY_SSH_KEY to the whole content of a private key file without a "
    "passphrase, such as a deploy key's, not the .pub file",
    "REPOSITORY_SSH_KNOWN_HOSTS": "set REPOSITORY_SSH_KNOWN_HOSTS to the host's known_hosts lines, as "
    "ssh-keyscan prints them",
    "WORKER_UPDATE": "set WORKER_UPDATE to 1 or 0",
    "MAX_REVISIONS": "set MAX_REVISIONS to a whole number of at least 1",
    "FAN_OUT_CONCURRENCY": "set FAN_OUT_CONCURRENCY to a whole number from 1 to 32",
    "WORKER_CONCURRENCY": "set WORKER_CONCURRENCY to a whole number from 1 to 32",
    "RETRY_ATTEMPTS": "set RETRY_ATTEMPTS to a whole number from 1 to 100",
    "RETRY_BASE_DELAY": "set RETRY_BASE_DELAY to a number of seconds from 0 to 30",
    "GIT_STALL_TIMEOUT": "set GIT_STALL_TIMEOUT to a whole number of seconds, at least 1",
    "GIT_TIMEOUT": "set GIT_TIMEOUT to a whole number of seconds, at least 1",
    "LOG_FORMAT": "set LOG_FORMAT to text or json",
}
# A missing setting's fix, where it differs from a wrong one's.
_MISSING_FIXES: dict[str, str] = {
    "REPOSITORY_REVISION": "give the commit hash as `arkindex-git-import revision <hash>` or set REPOSITORY_REVISION",
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


def _text_rule(rule: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A `rules.env` parser as a pydantic before-validator: text goes through it, values set by code pass."""
    return lambda value: rule(value) if isinstance(value, str) else value


def _setting_rule(rule: Callable[..., str], **options: Any) -> Callable[[str], str]:
    """A `rules.urls` check as a validator. Its ConfigError is already the whole line, with the setting's
    name and the fix: it travels as is, to be printed unchanged."""

    def check(value: str) -> str:
        try:
            return rule(value, **options)
        except ConfigError as exc:
            raise PydanticCustomError("setting", "{line}", {"line": str(exc)}) from None

    return check


EnvBool = Annotated[bool, BeforeValidator(_text_rule(env.parse_bool))]
WholeNumber = Annotated[int, BeforeValidator(_text_rule(env.whole_number))]
CommitHash = Annotated[str, AfterValidator(env.parse_hash)]
Ref = Annotated[str, AfterValidator(_setting_rule(check_ref))]


def _split_paths(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _check_paths(text: str) -> str:
    check_pathspecs(_split_paths(text))
    return text


Pathspecs = Annotated[str, AfterValidator(_setting_rule(_check_paths))]
# Optional at the top level, so that the model's annotation says SecretStr (the secret settings' test).
SSHKey = Annotated[SecretStr | None, BeforeValidator(_text_rule(env.parse_ssh_key))]
KnownHosts = Annotated[str, BeforeValidator(_text_rule(env.parse_known_hosts))]


class _EventSource(PydanticBaseSettingsSource):
    """The settings a push event file implies (REPOSITORY_EVENT, named by the code or the environment).

    It sits below the environment, so explicit REPOSITORY_* variables win over the event, and values
    passed by code win over both. A file that cannot be read is raised at once, alone: without it, what
    else is missing cannot be told."""

    def __init__(self, settings_cls: type[BaseSettings], *above: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._above = above

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file once

    def __call__(self) -> dict[str, Any]:
        if hasattr(self, "current_state"):  # pydantic-settings >= 2.4: what the sources above gave
            above = [self.current_state]
        else:  # ask them again (reading the environment costs about 2 ms)
            above = [source() for source in reversed(self._above)]
        named = {str(key).upper(): value for values in above for key, value in values.items()}
        path = named.get("REPOSITORY_EVENT")
        if not path:
            return {}
        from git_import.events import read_event

        return {_env_name(field): value for field, value in read_event(Path(path)).items()}


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
    # Before the URL, whose check reads it.
    repository_allow_local: EnvBool = Field(
        False,
        validation_alias="REPOSITORY_ALLOW_LOCAL",
        description="Set to 1 to allow local paths and `file://` URLs (for development only).",
    )
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
        env.DEFAULT_USERNAME,
        validation_alias="REPOSITORY_USERNAME",
        description="HTTP user name sent with the token.",
    )
    repository_ssh_key: SSHKey = Field(
        None,
        validation_alias="REPOSITORY_SSH_KEY",
        description="Private key (the whole file's content, without a passphrase) for an `ssh://` or "
        "`user@host:path` URL. Written with mode 0600 to a private temporary folder for the run and removed "
        "at its end; never in argv, logs or the clone. Unset: ssh's own keys and agent, if any.",
    )
    repository_ssh_known_hosts: KnownHosts | None = Field(
        None,
        validation_alias="REPOSITORY_SSH_KNOWN_HOSTS",
        description="known_hosts lines of the SSH host: its key is checked strictly against them alone. "
        "Unset: the key the host shows is accepted unchecked (`accept-new`), with a warning.",
    )
    repository_ref: Ref | None = Field(
        None,
        validation_alias="REPOSITORY_REF",
        description="Branch, tag or full ref to import; default: the remote's HEAD.",
    )
    repository_before: CommitHash | None = Field(
        None,
        validation_alias="REPOSITORY_BEFORE",
        description="Commit before the push (forty zeros or empty for a new branch: the target alone).",
    )
    repository_after: CommitHash | None = Field(
        None,
        validation_alias="REPOSITORY_AFTER",
        description="Pushed commit; default: the tip of `REPOSITORY_REF`.",
    )
    repository_paths: Pathspecs | None = Field(
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
    repository_revision: CommitHash | None = Field(
        None,
        validation_alias="REPOSITORY_REVISION",
        description="Commit imported by a per-revision task (set by the trigger on each task it creates).",
    )
    # --- Fan-out and import ------------------------------------------------------------------
    max_revisions: WholeNumber = Field(
        env.MAX_REVISIONS.default,
        ge=env.MAX_REVISIONS.low,
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
    worker_update: EnvBool = Field(
        True,
        validation_alias="WORKER_UPDATE",
        description="Whether a revision task updates a worker's name, type and description; the trigger sets 0 "
        "on every task but the newest revision's, since Ponos may run them in any order.",
    )
    fan_out_concurrency: WholeNumber = Field(
        env.FAN_OUT_CONCURRENCY.default,
        ge=env.FAN_OUT_CONCURRENCY.low,
        le=env.FAN_OUT_CONCURRENCY.high,
        validation_alias="FAN_OUT_CONCURRENCY",
        description="How many `CreateTask` calls run at once.",
    )
    worker_concurrency: WholeNumber = Field(
        env.WORKER_CONCURRENCY.default,
        ge=env.WORKER_CONCURRENCY.low,
        le=env.WORKER_CONCURRENCY.high,
        validation_alias="WORKER_CONCURRENCY",
        description="How many workers a revision task registers at once.",
    )
    # --- Robustness --------------------------------------------------------------------------
    git_stall_timeout: WholeNumber = Field(
        env.GIT_STALL_TIMEOUT.default,
        ge=env.GIT_STALL_TIMEOUT.low,
        validation_alias="GIT_STALL_TIMEOUT",
        description="Seconds a clone or fetch may transfer nothing before it is cut off and retried (over "
        "SSH: a connection that does not open, or a server answering no keepalive, for about that long).",
    )
    git_timeout: WholeNumber = Field(
        env.GIT_TIMEOUT.default,
        ge=env.GIT_TIMEOUT.low,
        validation_alias="GIT_TIMEOUT",
        description="Seconds one git command may run in all.",
    )
    retry_attempts: WholeNumber = Field(
        env.RETRY_ATTEMPTS.default,
        ge=env.RETRY_ATTEMPTS.low,
        le=env.RETRY_ATTEMPTS.high,
        validation_alias="RETRY_ATTEMPTS",
        description="Tries for a transient failure (network, 5xx, 429) of git or the API before giving up.",
    )
    retry_base_delay: float = Field(
        env.RETRY_BASE_DELAY.default,
        ge=env.RETRY_BASE_DELAY.low,
        le=env.RETRY_BASE_DELAY.high,
        validation_alias="RETRY_BASE_DELAY",
        description="First backoff delay in seconds; it doubles each try, with jitter, up to 30 s.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        validation_alias="LOG_FORMAT",
        description="`text` for plain lines, `json` for one JSON object a line.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        event = _EventSource(settings_cls, init_settings, env_settings)
        return init_settings, env_settings, event, dotenv_settings, file_secret_settings

    @field_validator("repository_url")
    @classmethod
    def _clone_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # A wrong REPOSITORY_ALLOW_LOCAL is reported on its own: the URL is then read as without it.
        allow_local = info.data.get("repository_allow_local", False)
        return _setting_rule(check_repository_url, allow_local=allow_local)(value)

    # --- Derived values ----------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        return _split_paths(self.repository_paths)

    @property
    def before(self) -> str | None:
        """The push's `before` commit, or None for a new branch."""
        return env.push_before(self.repository_before)

    @property
    def token(self) -> str | None:
        return self.repository_token.get_secret_value() if self.repository_token else None

    @property
    def ssh_key(self) -> str | None:
        return self.repository_ssh_key.get_secret_value() if self.repository_ssh_key else None

    @property
    def artifacts_dir(self) -> Path:
        return self.ponos_data / "current"

    # --- What a command needs ----------------------------------------------------------------
    def missing_settings(self, command: str) -> list[ConfigError]:
        """One error for each setting `command` needs (`rules.env.REQUIRED`) that is not set."""
        return [self._not_set(group) for group in env.missing(command, self._is_set)]

    def check_required(self, command: str) -> None:
        """Raise one ConfigError naming every setting `command` needs that is not set."""
        if problems := self.missing_settings(command):
            raise _one_error(problems)

    def _not_set(self, group: tuple[str, ...]) -> ConfigError:
        name = group[0]
        if name == "PONOS_PROCESS" and self.ponos_workflow:
            return ConfigError(
                "PONOS_WORKFLOW is set but PONOS_PROCESS is not: the Ponos agent no longer provides "
                "PONOS_WORKFLOW since Arkindex merged workflows into processes",
                hint="set PONOS_PROCESS (or ARKINDEX_PROCESS_ID) to the process UUID, or update the agent",
                settings=(name,),
            )
        if len({_FIELD_OF[other] for other in group}) > 1:  # other settings, not other names of one
            return ConfigError(f"neither {' nor '.join(group)} is set", hint=_FIXES[name], settings=group)
        return ConfigError(
            f"{name} is not set", hint=_MISSING_FIXES.get(name) or _FIXES[name], settings=(name,)
        )

    def _require(self, *groups: tuple[str, ...]) -> None:
        if problems := [self._not_set(group) for group in env.unset(groups, self._is_set)]:
            raise _one_error(problems)

    def _is_set(self, name: str) -> bool:
        return getattr(self, _FIELD_OF[name]) is not None

    def require_process(self) -> tuple[uuid.UUID, uuid.UUID]:
        """The process and task IDs, or a clear error when they are missing."""
        self._require(("PONOS_PROCESS", "ARKINDEX_PROCESS_ID"), ("PONOS_TASK",))
        assert self.ponos_process is not None and self.ponos_task is not None
        return self.ponos_process, self.ponos_task

    def require_api(self) -> None:
        self._require(("ARKINDEX_API_URL",), ("ARKINDEX_TASK_TOKEN", "ARKINDEX_API_TOKEN"))

    def require_repository(self) -> str:
        self._require(("REPOSITORY_URL",))
        assert self.repository_url is not None
        return self.repository_url


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return str(alias or field).upper()


def _env_names(field: str) -> list[str]:
    alias = Settings.model_fields[field].validation_alias
    return [str(a) for a in alias.choices] if isinstance(alias, AliasChoices) else [_env_name(field)]


# Every variable name (aliases included) → its field.
_FIELD_OF = {name: field for field in Settings.model_fields for name in _env_names(field)}


def _field_at(loc: tuple[int | str, ...]) -> str | None:
    """The field an error is about; pydantic names it by the variable it was read from."""
    if not loc:
        return None
    name = str(loc[0])
    return name if name in Settings.model_fields else _FIELD_OF.get(name.upper())


def _reason(field: str, error: Any) -> str:
    """Pydantic's reason for a wrong value, in the project's words: the one place they are adapted."""
    kind = error["type"]
    if kind in ("greater_than_equal", "less_than_equal"):
        metadata = Settings.model_fields[field].metadata  # Field(ge=, le=) as annotated_types Ge, Le
        bounds = {key: getattr(m, key) for m in metadata for key in ("ge", "le") if hasattr(m, key)}
        if "le" in bounds:
            return f"must be from {bounds['ge']} to {bounds['le']}"
        return f"must be at least {bounds['ge']}"
    if kind.startswith("uuid_"):
        return "is not a valid UUID"
    if kind.startswith(("float_", "int_")):
        return "is not a number"
    return error["msg"].removeprefix("Value error, ").replace("Input should be", "must be", 1)


def _invalid(exc: ValidationError) -> list[ConfigError]:
    """One error per wrong setting: `<VAR>: <reason> (<fix>)`, or the rule's own line."""
    problems: dict[str, ConfigError] = {}
    for error in exc.errors():
        field = _field_at(error["loc"])
        name = _env_name(field) if field else ".".join(map(str, error["loc"])).upper()
        if name in problems:
            continue
        if error["type"] == "setting":
            problems[name] = ConfigError(error["ctx"]["line"], settings=(name,))
        else:
            reason = _reason(field, error) if field else error["msg"]
            problems[name] = ConfigError(
                f"{name}: {reason}", hint=_FIXES.get(name, f"correct {name} or unset it"), settings=(name,)
            )
    return list(problems.values())


def _also_missing(command: str | None, overrides: dict[str, Any], exc: ValidationError) -> list[ConfigError]:
    """What `command` needs and lacks besides the wrong values of `exc`: read again with each wrong
    value at its default, so that one run names them all."""
    if command is None:
        return []
    wrong = {field for error in exc.errors() if (field := _field_at(error["loc"]))}
    defaults = {field: Settings.model_fields[field].get_default() for field in wrong}
    try:
        stand_in = Settings(**{**overrides, **defaults})
    except ValidationError:  # cannot happen with defaults; the wrong values are worth reporting alone
        return []
    return [
        stand_in._not_set(group)
        for group in env.missing(command, stand_in._is_set)
        if not wrong & {_FIELD_OF[name] for name in group}  # a wrong value is already named
    ]


def _one_error(problems: list[ConfigError]) -> ConfigError:
    """The problems as one ConfigError: one line that names them all."""
    if len(problems) == 1:
        return problems[0]
    listed = "; ".join(str(problem) for problem in problems)
    names = tuple(name for problem in problems for name in problem.settings)
    return ConfigError(f"{len(problems)} settings are missing or invalid: {listed}", settings=names)


def load_settings(command: str | None = None, **overrides: Any) -> Settings:
    """Read the settings from the environment; `overrides` win over it.

    Every wrong value is named in one :class:`ConfigError`; with `command` ("trigger", "trigger --dry-run",
    "revision"), so is every setting it needs and lacks (`Settings.check_required`)."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise _one_error(_invalid(exc) + _also_missing(command, overrides, exc)) from None
    if command is not None:
        settings.check_required(command)
    for field in SECRET_FIELDS:
        secret = getattr(settings, field)
        if secret is not None:
            register_secret(secret.get_secret_value())
    return settings


# The fields of the secret settings (named once, in `redact`).
SECRET_FIELDS = frozenset(_FIELD_OF[name] for name in SECRET_SETTINGS)


def settings_reference() -> str:
    """The README's settings reference, as a Markdown table generated from the model."""
    lines = ["| variable | default | secret | meaning |", "|---|---|---|---|"]
    for field, info in Settings.model_fields.items():
        default = info.default
        shown = "—" if default is None else f"`{default}`"
        name = " / ".join(f"`{name}`" for name in _env_names(field))
        secret = "yes" if field in SECRET_FIELDS else "no"
        lines.append(f"| {name} | {shown} | {secret} | {info.description} |")
    return "\n".join(lines)
