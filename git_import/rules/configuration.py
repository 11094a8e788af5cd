"""Worker configuration files of one revision (the current `arkindex/*.yml` format and the legacy `.arkindex.yml`): find, check, validate, convert.

Every problem with a file (a link, its size, UTF-8, unsafe or invalid YAML, the validator, a duplicate
slug) is recorded as that file's error and the next file is checked: the revision then lists every bad
file at once and registers nothing, so one push fixes them all and Arkindex never holds half a commit.
Only a wrong setting (the image template) raises.
"""

from __future__ import annotations

import functools
import logging
import posixpath
import string
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yamale
import yaml
from worker_configuration import convert as legacy
from worker_configuration.schema import build_schema

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


class BadFile(Exception):
    """One configuration file that cannot be used: what is wrong with it and how to fix it.

    Raised by the checks of one file and caught by the loop over the files, which records it and goes
    on: never a reason to stop reading the others."""

    def __init__(self, path: str, problem: str, hint: str) -> None:
        self.path = path
        self.message = f"{problem} ({hint})"
        super().__init__(f"{path}: {self.message}")


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
        """Record what is wrong with one file or worker definition; the other files are still checked."""
        error = {"file": file, "message": message}
        # A file read twice (a description shared by two legacy workers) is listed once.
        if error not in self.errors:
            self.errors.append(error)

    def refuse(self, bad: BadFile) -> None:
        self.add_error(bad.path, bad.message)


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
        raise BadFile(
            path,
            f"the file is {size} bytes, over the 1 MiB limit for a worker configuration file",
            "keep worker configuration files small; move large data out of them",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Where an editor shows it (the column counts bytes: the line is not text there).
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise BadFile(
            path, f"the file is not valid UTF-8 at line {line}, column {column}", "save the file as UTF-8"
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


_TOO_DEEP = (
    f"the YAML nests more than {MAX_YAML_DEPTH} levels deep",
    "flatten the nested lists and mappings",
)


def _expansion_problem(node: yaml.Node) -> tuple[str, str] | None:
    """What is unsafe in the document, measured on its node graph before anything is built from it (so
    an alias bomb is never expanded): (problem, hint), or None.

    It returns rather than raises: a traceback printer (pytest's among them) shows the arguments of the
    raising frame, and the repr of a bomb's node is itself a bomb."""
    try:
        size = _expanded_size(node, {}, set())
    except _TooDeep:
        return _TOO_DEEP
    except _Recursive:
        return "a YAML alias refers to itself", "remove the recursive anchor and alias"
    if size > MAX_YAML_NODES:
        return (
            f"the YAML expands to more than {MAX_YAML_NODES} nodes through aliases (an alias bomb)",
            "remove the YAML anchors and aliases that multiply its content",
        )
    return None


def _syntax_error(path: str, exc: yaml.YAMLError) -> BadFile:
    """PyYAML's error on one line (its own text spans several, with a copy of the source): where and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else problem
    return BadFile(path, f"invalid YAML{where}: {what}", "fix the YAML syntax there")


def parse_yaml(path: str, text: str) -> Any:
    """Parse one YAML document safely: an alias bomb (a document that expands past 100,000 nodes), a
    recursive alias or a document nested deeper than 100 levels is refused, as is a syntax error; each
    raises :class:`BadFile`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        unsafe = _expansion_problem(node)
        if unsafe:
            raise BadFile(path, *unsafe)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _syntax_error(path, exc) from None
    except RecursionError:  # the composer recurses once a level: a deep document ends here
        raise BadFile(path, *_TOO_DEEP) from None
    finally:
        loader.dispose()


def _validator_message(exc: Exception) -> str:
    if isinstance(exc, yamale.YamaleError):
        return "; ".join(str(error) for result in exc.results for error in result.errors)
    return str(exc)


def _check_regular(entry: TreeEntry) -> None:
    mode, kind, _, path = entry
    if mode == SYMLINK_MODE:
        raise BadFile(
            path,
            "the file is a symbolic link; worker configuration files must be regular files",
            "replace the link with the file itself",
        )
    if kind != "blob":
        raise BadFile(
            path,
            "the path is not a file (a folder or a submodule)",
            "make it a regular file, or give it a name that does not end in .yml or .yaml",
        )


def _is_current_file(path: str) -> bool:
    """A worker file of the current format: `arkindex/*.yml` or `arkindex/*.yaml`, not in a subfolder."""
    return PurePosixPath(path).parent.as_posix() == CONFIG_DIR and path.endswith((".yml", ".yaml"))


def _texts(config: Configuration, files: list[TreeEntry], read: BlobReader) -> list[tuple[str, str]]:
    """(path, text) of each usable file, their blobs read in one go. A link or a non-file is recorded and
    never read (a link is never followed: its target may lie outside the commit); a blob over the limit
    comes from the reader as its size alone, so it is recorded without ever being held."""
    regular = []
    for entry in files:
        try:
            _check_regular(entry)
            regular.append(entry)
        except BadFile as bad:
            config.refuse(bad)
    blobs = read([e[2] for e in regular]) if regular else {}
    texts = []
    for _, _, oid, path in regular:
        try:
            texts.append((path, _decode(path, blobs[oid])))
        except BadFile as bad:
            config.refuse(bad)
    return texts


def _documents(config: Configuration, texts: Iterable[tuple[str, str]]) -> list[tuple[str, str, Any]]:
    """(path, text, YAML data) of each file that parses safely; the others are recorded."""
    documents = []
    for path, text in texts:
        try:
            documents.append((path, text, parse_yaml(path, text)))
        except BadFile as bad:
            config.refuse(bad)
    return documents


@functools.cache
def _schema() -> Any:
    """The validator's schema, built once: `worker_configuration.validator.validate` builds it again for
    every file, which cost more than the validation itself on a revision of 200 workers."""
    return build_schema()


def _current_worker(path: str, text: str, data: Any) -> WorkerFile:
    """The worker one `arkindex/*.yml` file declares, as the validator accepts it."""
    if not isinstance(data, dict):
        raise BadFile(
            path,
            "the file does not hold a YAML mapping (a worker)",
            "write the worker's fields, such as slug, display_name, type and description, as one YAML mapping",
        )
    try:
        yamale.validate(_schema(), [(data, path)])
    except (yamale.YamaleError, ValueError, AssertionError) as exc:
        raise BadFile(
            path,
            f"the worker configuration is invalid: {_validator_message(exc)}",
            f"fix the fields named; `worker-validator validate {path}`, "
            "from teklia-worker-configuration, checks it locally",
        ) from None
    return WorkerFile(path, text, data)


def read_current(entries: list[TreeEntry], read: BlobReader) -> Configuration:
    """The current format: one worker per `arkindex/*.yml|yaml` file."""
    config = Configuration("current")
    files = sorted((e for e in entries if _is_current_file(e[3])), key=lambda e: e[3])
    for path, text, data in _documents(config, _texts(config, files, read)):
        try:
            config.workers.append(_current_worker(path, text, data))
        except BadFile as bad:
            config.refuse(bad)
    _check_unique_slugs(config)
    return config


def _duplicate_slug(first: str, second: str, slug: Any) -> BadFile:
    """The later of two definitions of one slug is the bad one; the message names the earlier."""
    where = "twice in this file" if first == second else f"by {first} too"
    return BadFile(second, f"the worker slug {slug!r} is declared {where}", "give each worker its own slug")


def _check_unique_slugs(config: Configuration) -> None:
    """Record each worker whose slug an earlier one took, and keep the first only."""
    seen: dict[str, str] = {}
    unique = []
    for worker in config.workers:
        if worker.slug in seen:
            config.refuse(_duplicate_slug(seen[worker.slug], worker.path, worker.slug))
            continue
        seen[worker.slug] = worker.path
        unique.append(worker)
    config.workers = unique


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
    description names them, with the same safety checks as the current format's files; a bad one is
    recorded in ``config`` and left out. Each is read once (None: a bad one)."""

    tree: dict[str, TreeEntry]
    read: BlobReader
    config: Configuration
    cache: dict[str, str | None] = field(default_factory=dict)

    def texts(self, paths: list[str]) -> dict[str, str]:
        wanted = [p for p in dict.fromkeys(paths) if p not in self.cache]
        if wanted:
            read = dict(_texts(self.config, [self.tree[p] for p in wanted], self.read))
            self.cache.update((p, read.get(p)) for p in wanted)
        return {p: text for p in dict.fromkeys(paths) if (text := self.cache[p]) is not None}


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
    tree = {e[3]: e for e in all_files() if e[1] == "blob" and e[3] != LEGACY_FILE}
    files = _CommitFiles(tree, read, config)
    definitions = _legacy_definitions(config, values, files)
    # Every description in one read, not one a worker: each read may be a request to the server.
    files.texts(_description_paths(definitions, files.tree))
    with tempfile.TemporaryDirectory(prefix="git-import-legacy-") as tmp:
        converter = _LegacyConverter(Path(tmp), files, config)
        for source, definition in definitions:
            converter.add(source, definition)
    _check_unique_slugs(config)
    if not config.workers and not config.errors:
        # Patterns that match nothing: not an error of any one entry, but the file declares no worker.
        config.add_error(
            LEGACY_FILE,
            "its `workers` list declares no worker: its patterns match no file of the commit "
            "(fix the patterns, or add the worker files they should name)",
        )
    return config


def _legacy_workers(config: Configuration, entries: list[TreeEntry], read: BlobReader) -> list[Any] | None:
    """The `workers` list of `.arkindex.yml`; None, with the file's error recorded, when it has none."""
    (entry,) = [e for e in entries if e[3] == LEGACY_FILE]
    documents = _documents(config, _texts(config, [entry], read))
    if not documents:  # a link, too big, not UTF-8 or not YAML: already recorded
        return None
    ((_, _, data),) = documents
    if not isinstance(data, dict) or not isinstance(data.get("workers"), list) or not data["workers"]:
        config.add_error(
            LEGACY_FILE,
            "no `workers` list found (write the version 2 format, with a `workers` list, "
            "or move each worker to its own arkindex/<slug>.yml)",
        )
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
                    f"the pattern {value!r} points outside the repository "
                    "(give a pattern relative to the repository's root)",
                )
                continue
            documents = _documents(config, files.texts(matched).items())
            definitions.extend((path, data) for path, _, data in documents)
        else:
            config.add_error(
                LEGACY_FILE,
                f"a `workers` entry is a {type(value).__name__} (give a worker mapping or a glob pattern)",
            )
    return definitions


def _description_paths(definitions: list[tuple[str, Any]], tree: dict[str, TreeEntry]) -> list[str]:
    """The files of the commit the definitions name as descriptions: those the converter reads."""
    paths = []
    for _, definition in definitions:
        description = definition.get("description") if isinstance(definition, dict) else None
        inside = _safe_relative(description) if isinstance(description, str) else None
        if inside is not None and inside in tree:
            paths.append(inside)
    return paths


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
            self.config.add_error(
                source, "a worker definition is not a YAML mapping (write each worker as one mapping)"
            )
            return
        worker = dict(definition)
        slug = worker.get("slug", "?")
        if not self._place_description(source, worker, slug):
            return
        try:
            legacy.convert_worker(worker, self.base)
        except FileExistsError:  # the converter refuses to overwrite the file of an earlier worker
            self.config.refuse(_duplicate_slug(self.declared_in.get(str(slug), LEGACY_FILE), source, slug))
            return
        except Exception as exc:  # the converter raises many kinds; each is this definition's error
            # Its messages name the temporary folder the conversion runs in: say the commit's path.
            problem = _validator_message(exc).replace(f"{self.base}/", "")
            self.config.add_error(source, f"worker {slug}: {problem} (fix this worker's definition)")
            return
        self.declared_in[str(slug)] = source
        text = (self.base / CONFIG_DIR / f"{slug}.yml").read_text()
        label = f"{LEGACY_FILE} ({slug})" if source == LEGACY_FILE else f"{source} (via {LEGACY_FILE})"
        self.config.workers.append(WorkerFile(label, text, yaml.safe_load(text)))

    def _place_description(self, source: str, worker: dict[str, Any], slug: Any) -> bool:
        """Make the worker's description path relative and copy that file of the commit where the converter
        reads it; False, with the error recorded, when the path leaves the repository or the file is bad."""
        description = worker.get("description")
        if not isinstance(description, str):
            return True
        inside = _safe_relative(description)
        if inside is None:
            self.config.add_error(
                source,
                f"worker {slug}: the description file {description!r} is outside the repository "
                "(give a path relative to the repository's root)",
            )
            return False
        worker["description"] = inside
        if inside in self.files.tree and not (self.base / inside).exists():
            text = self.files.texts([inside]).get(inside)
            if text is None:  # a link, too big or not UTF-8: recorded under its own path
                return False
            target = self.base / inside
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return True


def is_configuration_path(path: str) -> bool:
    """Whether the revision task's listing (`git ls-tree REV arkindex/ .arkindex.yml`) holds `path`:
    the legacy file, or an entry right in `arkindex/` (a file, a folder or a submodule)."""
    return path == LEGACY_FILE or PurePosixPath(path).parent.as_posix() == CONFIG_DIR


def configuration_format(entries: Iterable[TreeEntry]) -> str:
    """ "current", "legacy" or "none": `arkindex/*.yml|yaml` wins over a legacy `.arkindex.yml`."""
    paths = [e[3] for e in entries]
    if any(_is_current_file(path) for path in paths):
        return "current"
    return "legacy" if LEGACY_FILE in paths else "none"


def first_reads(entries: list[TreeEntry]) -> list[str]:
    """The blobs :func:`read_configuration` asks its reader for first, all in one call: the current
    format's files, or the legacy file (whose patterns and descriptions then name more). Links and
    non-files are never read."""
    fmt = configuration_format(entries)
    if fmt == "none":
        return []
    wanted = (e for e in entries if (_is_current_file(e[3]) if fmt == "current" else e[3] == LEGACY_FILE))
    return [oid for mode, kind, oid, _ in wanted if mode != SYMLINK_MODE and kind == "blob"]


def read_configuration(
    entries: list[TreeEntry], all_files: Callable[[], list[TreeEntry]], read: BlobReader
) -> Configuration:
    """Pick the format: `arkindex/*.yml|yaml` wins over a legacy `.arkindex.yml` (dropped in Arkindex 1.12)."""
    fmt = configuration_format(entries)
    if fmt == "current":
        if any(e[3] == LEGACY_FILE for e in entries):
            logger.info(
                "both arkindex/ and %s exist: the current format wins, %s is ignored",
                LEGACY_FILE,
                LEGACY_FILE,
            )
        config = read_current(entries, read)
    elif fmt == "legacy":
        config = read_legacy(entries, all_files, read)
    else:
        return Configuration("none")
    # Found check by check (links first, duplicates last): listed file by file, for whoever fixes them.
    config.errors.sort(key=lambda error: error["file"])
    return config
