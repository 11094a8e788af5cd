"""Worker configuration files of one revision (the current `arkindex/*.yml` format and the legacy `.arkindex.yml`): find, check, validate, convert.

Safety checks on raw files (size, symlink, UTF-8, YAML aliases, duplicate slugs) come before any
API write and stop the whole revision; a file the validator rejects only fails its own worker.
"""

from __future__ import annotations

import logging
import posixpath
import string
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yamale
import yaml
from worker_configuration import convert as legacy
from worker_configuration.validator import validate

from git_import.errors import ConfigError

logger = logging.getLogger(__name__)

CONFIG_DIR = "arkindex"
LEGACY_FILE = ".arkindex.yml"
MAX_FILE_SIZE = 1024 * 1024
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 100
SYMLINK_MODE = "120000"
PLACEHOLDERS = {"slug", "hash", "short_hash", "ref"}

# (mode, type, oid, path) as `git ls-tree` gives them
TreeEntry = tuple[str, str, str, str]
# reads blobs by oid: returns oid → bytes, or the size alone of a blob over MAX_FILE_SIZE
BlobReader = Callable[[list[str]], dict[str, bytes | int]]


@dataclass
class WorkerFile:
    path: str
    text: str
    data: dict[str, Any]

    @property
    def slug(self) -> str:
        return str(self.data["slug"])


@dataclass
class Configuration:
    format: str  # "current", "legacy" or "none"
    workers: list[WorkerFile] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)  # {"file", "message"}

    def add_error(self, file: str, message: str) -> None:
        """Record what is wrong with one file or worker definition; the revision goes on with the others."""
        self.errors.append({"file": file, "message": message})


def check_image_template(template: str) -> str:
    """Refuse a WORKER_IMAGE_TEMPLATE with a placeholder we do not fill (before anything is created).

    Only plain placeholders are accepted: no attribute or index access, conversion or format spec (a
    spec such as ``{hash:>999999999}`` would build a huge string).
    """
    hint = "use only {slug}, {hash}, {short_hash} and {ref}, without format specs; write {{ and }} for literal braces"
    try:
        fields = [
            (name, conv, spec)
            for _, name, spec, conv in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise ConfigError(
            f"WORKER_IMAGE_TEMPLATE {template!r} is not a valid template ({exc})", hint=hint
        ) from None
    unknown = sorted({"{" + name + "}" for name, _, _ in fields if name not in PLACEHOLDERS})
    if unknown:
        raise ConfigError(
            f"WORKER_IMAGE_TEMPLATE {template!r} uses unknown placeholder(s) {', '.join(unknown)}", hint=hint
        )
    fancy = [name for name, conv, spec in fields if conv or spec]
    if fancy:
        raise ConfigError(
            f"WORKER_IMAGE_TEMPLATE {template!r} uses a conversion or format spec on {{{fancy[0]}}}",
            hint=hint,
        )
    return template


def image_for(template: str, *, slug: str, commit: str, ref_name: str | None) -> str:
    return template.format(slug=slug, hash=commit, short_hash=commit[:8], ref=ref_name or "")


def _decode(path: str, raw: bytes | int) -> str:
    size = raw if isinstance(raw, int) else len(raw)
    if isinstance(raw, int) or size > MAX_FILE_SIZE:
        raise ConfigError(
            f"{path} is {size} bytes, over the 1 MiB limit for a worker configuration file",
            hint="keep worker configuration files small; move large data out of them",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid UTF-8 (byte {exc.start})", hint="save the file as UTF-8"
        ) from None


class _TooDeep(Exception):
    pass


class _Recursive(Exception):
    pass


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int], depth: int = 0) -> int:
    """How many nodes the document has once every alias is expanded (shared subtrees counted once each)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _Recursive
    if depth > MAX_YAML_DEPTH:
        raise _TooDeep
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, active, depth + 1) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(
            _expanded_size(k, memo, active, depth + 1) + _expanded_size(v, memo, active, depth + 1)
            for k, v in node.value
        )
    active.discard(key)
    memo[key] = size
    return size


def parse_yaml(path: str, text: str) -> Any:
    """Parse one YAML document safely: an alias bomb (a document that expands past 100,000 nodes), a
    recursive alias or a document nested deeper than 100 levels is refused.

    A syntax error raises ``yaml.YAMLError`` (the file's own error); an unsafe document raises ConfigError.
    """
    too_deep = ConfigError(
        f"{path} nests its YAML more than {MAX_YAML_DEPTH} levels deep",
        hint="flatten the nested lists and mappings",
    )
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise too_deep from None
        if node is None:
            return None
        try:
            size = _expanded_size(node, {}, set())
        except _TooDeep:
            raise too_deep from None
        except _Recursive:
            raise ConfigError(
                f"{path} holds a YAML alias that refers to itself",
                hint="remove the recursive anchor and alias",
            ) from None
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{path} expands to more than {MAX_YAML_NODES} YAML nodes through aliases (an alias bomb)",
                hint="remove the YAML anchors and aliases that multiply its content",
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _validator_message(exc: Exception) -> str:
    if isinstance(exc, yamale.YamaleError):
        return "; ".join(str(error) for result in exc.results for error in result.errors)
    return str(exc)


def _check_regular(entry: TreeEntry) -> None:
    mode, kind, _, path = entry
    if mode == SYMLINK_MODE:
        raise ConfigError(
            f"{path} is a symbolic link; worker configuration files must be regular files",
            hint="replace the link with the file itself",
        )
    if kind != "blob":
        raise ConfigError(f"{path} is not a file", hint="worker configuration files must be regular files")


def _is_current_file(path: str) -> bool:
    """A worker file of the current format: `arkindex/*.yml` or `arkindex/*.yaml`, not in a subfolder."""
    return PurePosixPath(path).parent.as_posix() == CONFIG_DIR and path.endswith((".yml", ".yaml"))


def _fetch(files: list[TreeEntry], read: BlobReader) -> dict[str, bytes | int]:
    """The raw content of ``files`` by path, in one read; a link or a non-file is refused before any read."""
    for entry in files:
        _check_regular(entry)
    blobs = read([e[2] for e in files])
    return {e[3]: blobs[e[2]] for e in files}


def _decoded(raw: dict[str, bytes | int]) -> Iterator[tuple[str, str]]:
    """(path, text) of each file, each decoded only when the caller reaches it."""
    for path, content in raw.items():
        yield path, _decode(path, content)


def _documents(config: Configuration, texts: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, Any]]:
    """(path, text, YAML data) of each file in turn; a syntax error is recorded as that file's own error
    and the file skipped, while an unsafe document (ConfigError) stops everything."""
    for path, text in texts:
        try:
            data = parse_yaml(path, text)
        except yaml.YAMLError as exc:
            config.add_error(path, f"invalid YAML: {exc}")
            continue
        yield path, text, data


def read_current(entries: list[TreeEntry], read: BlobReader) -> Configuration:
    """The current format: one worker per `arkindex/*.yml|yaml` file."""
    config = Configuration("current")
    files = sorted((e for e in entries if _is_current_file(e[3])), key=lambda e: e[3])
    for path, text, data in _documents(config, _decoded(_fetch(files, read))):
        if not isinstance(data, dict):
            config.add_error(path, "the file must hold one YAML mapping (a worker)")
            continue
        try:
            validate(data, name=path)
        except (yamale.YamaleError, ValueError, AssertionError) as exc:
            config.add_error(path, _validator_message(exc))
            continue
        config.workers.append(WorkerFile(path, text, data))
    _check_unique_slugs(config.workers)
    return config


def _duplicate_slug(first: str, second: str, slug: Any) -> ConfigError:
    return ConfigError(
        f"{first} and {second} both declare the worker slug {slug!r}", hint="give each worker its own slug"
    )


def _check_unique_slugs(workers: list[WorkerFile]) -> None:
    seen: dict[str, str] = {}
    for worker in workers:
        if worker.slug in seen:
            raise _duplicate_slug(seen[worker.slug], worker.path, worker.slug)
        seen[worker.slug] = worker.path


def _safe_relative(path: str) -> str | None:
    """`path` normalised inside the repository, or None when it is absolute or climbs out of it."""
    normal = posixpath.normpath(path)
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        return None
    return normal


def match_legacy_pattern(value: str, paths: Iterable[str]) -> list[str] | None:
    """The paths a legacy `workers` glob pattern names, sorted; None when the pattern is not inside the
    repository (absolute, climbing out of it, or the repository itself)."""
    pattern = _safe_relative(value)
    if pattern is None or pattern == ".":
        return None
    # As `Path.rglob`, which the converter uses: the pattern matches at any depth.
    while pattern.startswith("**/"):
        pattern = pattern[3:]
    return sorted(p for p in paths if PurePosixPath(p).match(pattern))


@dataclass
class _CommitFiles:
    """The commit's files (blobs by path, the legacy file left out), read when a pattern or a
    description names them, with the same safety checks as the current format's files."""

    tree: dict[str, TreeEntry]
    read: BlobReader

    def texts(self, paths: list[str]) -> dict[str, str]:
        wanted = [self.tree[p] for p in dict.fromkeys(paths)]
        return dict(_decoded(_fetch(wanted, self.read)))


def read_legacy(
    entries: list[TreeEntry], all_files: Callable[[], list[TreeEntry]], read: BlobReader
) -> Configuration:
    """The legacy `.arkindex.yml` (version 2), converted with `worker_configuration.convert`.

    Only files of the commit are read: glob patterns are matched against the commit's tree (never the
    file system) and description paths that leave the repository are refused, so a repository cannot
    publish a file of the machine running the task. Files named by patterns get the same safety checks
    as the current format's files.
    """
    config = Configuration("legacy")
    values = _legacy_workers(config, entries, read)
    if values is None:
        return config
    files = _CommitFiles({e[3]: e for e in all_files() if e[1] == "blob" and e[3] != LEGACY_FILE}, read)
    definitions = _legacy_definitions(config, values, files)
    with tempfile.TemporaryDirectory(prefix="git-import-legacy-") as tmp:
        converter = _LegacyConverter(Path(tmp), files, config)
        for source, definition in definitions:
            converter.add(source, definition)
    _check_unique_slugs(config.workers)
    return config


def _legacy_workers(config: Configuration, entries: list[TreeEntry], read: BlobReader) -> list[Any] | None:
    """The `workers` list of `.arkindex.yml`; None, with the file's error recorded, when it has none."""
    (entry,) = [e for e in entries if e[3] == LEGACY_FILE]
    documents = list(_documents(config, _decoded(_fetch([entry], read))))
    if not documents:  # invalid YAML, already recorded
        return None
    ((_, _, data),) = documents
    if not isinstance(data, dict) or not isinstance(data.get("workers"), list) or not data["workers"]:
        config.add_error(LEGACY_FILE, "no `workers` list found (version 2 format expected)")
        return None
    return data["workers"]


def _legacy_definitions(
    config: Configuration, values: list[Any], files: _CommitFiles
) -> list[tuple[str, Any]]:
    """(source file, definition) for each worker: a mapping in `workers` is defined in `.arkindex.yml`
    itself, a glob pattern names YAML files that each define one."""
    definitions: list[tuple[str, Any]] = []
    for value in values:
        if isinstance(value, dict):
            definitions.append((LEGACY_FILE, value))
        elif isinstance(value, str):
            matched = match_legacy_pattern(value, files.tree)
            if matched is None:
                config.add_error(
                    LEGACY_FILE,
                    f"the pattern {value!r} points outside the repository; give a relative pattern",
                )
                continue
            documents = _documents(config, files.texts(matched).items())
            definitions.extend((path, data) for path, _, data in documents)
        else:
            config.add_error(
                LEGACY_FILE,
                f"a `workers` entry must be a mapping or a glob pattern, not {type(value).__name__}",
            )
    return definitions


@dataclass
class _LegacyConverter:
    """Converts legacy worker definitions one at a time in ``base``: the converter reads description files
    there (copied from the commit) and writes each worker's `arkindex/<slug>.yml` there."""

    base: Path
    files: _CommitFiles
    config: Configuration
    declared_in: dict[str, str] = field(default_factory=dict)  # slug → the file that defined it

    def add(self, source: str, definition: Any) -> None:
        """Convert one definition into a worker of the configuration, or record why it cannot be."""
        if not isinstance(definition, dict):
            self.config.add_error(source, "a worker definition must be a YAML mapping")
            return
        worker = dict(definition)
        slug = worker.get("slug", "?")
        if not self._place_description(source, worker, slug):
            return
        try:
            legacy.convert_worker(worker, self.base)
        except FileExistsError:  # the converter refuses to overwrite the file of an earlier worker
            raise _duplicate_slug(self.declared_in.get(str(slug), LEGACY_FILE), source, slug) from None
        except Exception as exc:  # the converter raises many kinds; each fails this worker only
            self.config.add_error(source, f"worker {slug}: {_validator_message(exc)}")
            return
        self.declared_in[str(slug)] = source
        text = (self.base / CONFIG_DIR / f"{slug}.yml").read_text()
        label = f"{LEGACY_FILE} ({slug})" if source == LEGACY_FILE else f"{source} (via {LEGACY_FILE})"
        self.config.workers.append(WorkerFile(label, text, yaml.safe_load(text)))

    def _place_description(self, source: str, worker: dict[str, Any], slug: Any) -> bool:
        """Make the worker's description path relative and copy that file of the commit where the converter
        reads it; False, with the error recorded, when the path leaves the repository."""
        description = worker.get("description")
        if not isinstance(description, str):
            return True
        inside = _safe_relative(description)
        if inside is None:
            self.config.add_error(
                source, f"worker {slug}: the description file {description!r} is outside the repository"
            )
            return False
        worker["description"] = inside
        if inside in self.files.tree and not (self.base / inside).exists():
            text = self.files.texts([inside])[inside]
            target = self.base / inside
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return True


def read_configuration(
    entries: list[TreeEntry], all_files: Callable[[], list[TreeEntry]], read: BlobReader
) -> Configuration:
    """Pick the format: `arkindex/*.yml|yaml` wins over a legacy `.arkindex.yml` (dropped in Arkindex 1.12)."""
    has_current = any(_is_current_file(e[3]) for e in entries)
    has_legacy = any(e[3] == LEGACY_FILE for e in entries)
    if has_current:
        if has_legacy:
            logger.info(
                "both arkindex/ and %s exist: the current format wins, %s is ignored",
                LEGACY_FILE,
                LEGACY_FILE,
            )
        return read_current(entries, read)
    if has_legacy:
        return read_legacy(entries, all_files, read)
    return Configuration("none")
