"""Fast direct tests of the pure parts of git_import/rules/configuration.py: the image template check and the
safety checks on configuration files (size, UTF-8, aliases, symlinks, duplicate slugs), then the two
formats. Trees and blobs are given as data, exactly as `git ls-tree` and `git cat-file` return them.

A bad file is never raised: it is recorded in the configuration's errors, and every other file is still
checked, so one run lists them all."""

from __future__ import annotations

import hashlib

import pytest

from git_import.errors import ConfigError
from git_import.local.sample import worker_yaml
from git_import.rules.configuration import (
    MAX_FILE_SIZE,
    BadFile,
    check_image_template,
    image_for,
    match_legacy_pattern,
    parse_yaml,
    read_configuration,
)

HASH = "0123456789abcdef0123456789abcdef01234567"


class Tree:
    """A commit's files as (mode, type, oid, path) entries, and a blob reader that counts its reads."""

    def __init__(self, files: dict[str, str | bytes], symlinks: dict[str, str] | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.entries: list[tuple[str, str, str, str]] = []
        self.reads: list[list[str]] = []
        for path, content in files.items():
            self._add("100644", path, content.encode() if isinstance(content, str) else content)
        for path, target in (symlinks or {}).items():
            self._add("120000", path, target.encode())

    def _add(self, mode: str, path: str, raw: bytes) -> None:
        oid = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
        self.blobs[oid] = raw
        self.entries.append((mode, "blob", oid, path))

    def top(self) -> list[tuple[str, str, str, str]]:
        """What `ls-tree <commit> arkindex/ .arkindex.yml` lists."""
        return [e for e in self.entries if e[3] == ".arkindex.yml" or e[3].startswith("arkindex/")]

    def read(self, oids: list[str]) -> dict[str, bytes | int]:
        """As the real reader (`Repo.read_blobs`): a blob over the limit comes as its size alone."""
        self.reads.append(list(oids))
        return {
            oid: len(self.blobs[oid]) if len(self.blobs[oid]) > MAX_FILE_SIZE else self.blobs[oid]
            for oid in oids
        }

    def configuration(self):
        return read_configuration(self.top(), lambda: list(self.entries), self.read)


# --- WORKER_IMAGE_TEMPLATE ------------------------------------------------------------------------


def test_image_template_fills_every_placeholder():
    template = check_image_template("registry.example.com/{slug}/{hash}:{ref}-{short_hash}")
    assert image_for(template, slug="hello", commit=HASH, ref_name="main") == (
        f"registry.example.com/hello/{HASH}:main-01234567"
    )


def test_image_template_literal_braces_are_kept():
    assert image_for(check_image_template("{{x}}{slug}"), slug="a", commit=HASH, ref_name=None) == "{x}a"


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("registry/{slug}:{commit}", "{commit}"),
        ("registry/{}:{hash}", "{}"),
        ("registry/{0}", "{0}"),
        ("registry/{slug.__class__}", "{slug.__class__}"),
        ("registry/{slug[0]}", "{slug[0]}"),
    ],
)
def test_image_template_unknown_placeholder_is_refused(template, named):
    with pytest.raises(ConfigError) as excinfo:
        check_image_template(template)
    message = str(excinfo.value)
    assert "WORKER_IMAGE_TEMPLATE" in message
    assert f"unknown placeholder(s) {named}" in message
    assert "{slug}, {hash}, {short_hash} and {ref}" in message  # the fix
    assert excinfo.value.exit_code == 2


@pytest.mark.parametrize("template", ["{hash:>999999999999}", "{slug!r}", "{ref:{slug}}"])
def test_image_template_format_specs_are_refused(template):
    """A format spec could build a huge string (or run a conversion): only plain placeholders."""
    with pytest.raises(ConfigError, match="conversion or format spec"):
        check_image_template(template)


@pytest.mark.parametrize("template", ["registry/{slug", "registry/slug}"])
def test_image_template_malformed(template):
    with pytest.raises(ConfigError, match="not a valid template"):
        check_image_template(template)


# --- YAML safety ----------------------------------------------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly():
    with pytest.raises(BadFile) as excinfo:
        parse_yaml("arkindex/bomb.yml", alias_bomb())
    assert excinfo.value.path == "arkindex/bomb.yml"
    assert excinfo.value.message == (
        "the YAML expands to more than 100000 nodes through aliases (an alias bomb) "
        "(remove the YAML anchors and aliases that multiply its content)"
    )


def test_a_few_aliases_are_fine():
    data = parse_yaml("a.yml", "base: &b {x: 1}\none: *b\ntwo: *b\n")
    assert data == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 1}}


def test_recursive_alias_is_refused():
    with pytest.raises(BadFile, match="refers to itself"):
        parse_yaml("a.yml", "a: &a [*a]\n")


@pytest.mark.parametrize("depth", [150, 5000])
def test_deep_nesting_is_refused_without_crashing(depth):
    with pytest.raises(BadFile, match="levels deep"):
        parse_yaml("a.yml", "[" * depth + "]" * depth)


def test_syntax_error_is_the_files_own_error_on_one_line():
    tree = Tree({"arkindex/bad.yml": "slug: [unclosed\n", "arkindex/good.yml": worker_yaml("good", "Good")})
    config = tree.configuration()
    assert [w.slug for w in config.workers] == ["good"]
    assert config.errors == [
        {
            "file": "arkindex/bad.yml",
            "message": "invalid YAML at line 2, column 1: while parsing a flow sequence: "
            "expected ',' or ']', but got '<stream end>' (fix the YAML syntax there)",
        }
    ]


def test_unsafe_yaml_tag_is_the_files_own_error():
    config = Tree({"arkindex/tag.yml": "!!python/object:os.system {}\n"}).configuration()
    ((error),) = config.errors
    assert error["message"].startswith("invalid YAML at line 1, column 1: could not determine a constructor")


# --- current format -------------------------------------------------------------------------------


def test_current_format_reads_every_file_in_one_read():
    tree = Tree(
        {
            "arkindex/a.yml": worker_yaml("a", "A"),
            "arkindex/b.yaml": worker_yaml("b", "B", "Bee", type="recognizer"),
            "arkindex/notes.txt": "not a worker",
            "README.md": "# readme",
        }
    )
    config = tree.configuration()
    assert config.format == "current"
    assert [(w.path, w.slug, w.data["type"]) for w in config.workers] == [
        ("arkindex/a.yml", "a", "classifier"),
        ("arkindex/b.yaml", "b", "recognizer"),
    ]
    assert config.workers[1].text == worker_yaml("b", "B", "Bee", type="recognizer")
    assert config.errors == []
    assert len(tree.reads) == 1


def test_validator_message_names_the_file():
    tree = Tree(
        {
            "arkindex/bad.yml": "slug: bad\ndisplay_name: Bad\ntype: classifier\n",  # no description
            "arkindex/good.yml": worker_yaml("good", "Good"),
        }
    )
    config = tree.configuration()
    assert [w.slug for w in config.workers] == ["good"]
    assert config.errors == [
        {
            "file": "arkindex/bad.yml",
            "message": "the worker configuration is invalid: description: Required field missing "
            "(fix the fields named; `worker-validator validate arkindex/bad.yml`, "
            "from teklia-worker-configuration, checks it locally)",
        }
    ]


def test_file_over_one_mebibyte_is_refused_by_its_size():
    big = worker_yaml("big", "Big") + "# " + "x" * MAX_FILE_SIZE + "\n"
    tree = Tree({"arkindex/big.yml": big})
    config = tree.configuration()
    assert config.workers == []
    assert config.errors == [
        {
            "file": "arkindex/big.yml",
            "message": f"the file is {len(big)} bytes, over the 1 MiB limit for a worker configuration file "
            "(keep worker configuration files small; move large data out of them)",
        }
    ]


def test_invalid_utf8_is_refused():
    tree = Tree({"arkindex/latin1.yml": worker_yaml("w", "Caf\xe9").encode("latin-1")})
    assert tree.configuration().errors == [
        {
            "file": "arkindex/latin1.yml",
            "message": "the file is not valid UTF-8 at line 2, column 18 (save the file as UTF-8)",
        }
    ]


def test_symlink_is_refused_and_never_read():
    tree = Tree({"README.md": "x"}, symlinks={"arkindex/link.yml": "../README.md"})
    assert tree.configuration().errors == [
        {
            "file": "arkindex/link.yml",
            "message": "the file is a symbolic link; worker configuration files must be regular files "
            "(replace the link with the file itself)",
        }
    ]
    assert tree.reads == []


def test_duplicate_slugs_are_refused():
    tree = Tree(
        {"arkindex/one.yml": worker_yaml("same", "One"), "arkindex/two.yml": worker_yaml("same", "Two")}
    )
    config = tree.configuration()
    assert config.errors == [
        {
            "file": "arkindex/two.yml",
            "message": "the worker slug 'same' is declared by arkindex/one.yml too "
            "(give each worker its own slug)",
        }
    ]


def test_every_bad_file_is_recorded_in_one_pass():
    """One of each kind beside a good file: all recorded, in file order. The link is never read; the
    oversized blob comes from the reader as its size alone (as from `Repo.read_blobs`) and is reported by
    it; one read serves every other file."""
    big = "# " + "x" * MAX_FILE_SIZE + "\n"
    tree = Tree(
        {
            "arkindex/a-good.yml": worker_yaml("good", "Good"),
            "arkindex/b-big.yml": big,
            "arkindex/c-bomb.yml": alias_bomb(),
            "arkindex/d-latin1.yml": worker_yaml("latin", "Caf\xe9").encode("latin-1"),
            "arkindex/e-syntax.yml": "slug: [unclosed\n",
            "arkindex/f-invalid.yml": worker_yaml("invalid", "Invalid").replace("disabled", "always"),
            "arkindex/g-list.yml": "- not\n- a worker\n",
            "arkindex/h-same.yml": worker_yaml("good", "Again"),
            "shared/real.yml": worker_yaml("linked", "Linked"),
        },
        symlinks={"arkindex/i-link.yml": "../shared/real.yml"},
    )
    config = tree.configuration()
    assert [w.slug for w in config.workers] == ["good"]
    messages = {error["file"]: error["message"] for error in config.errors}
    bad = ["b-big", "c-bomb", "d-latin1", "e-syntax", "f-invalid", "g-list", "h-same", "i-link"]
    assert list(messages) == [f"arkindex/{name}.yml" for name in bad]
    assert messages["arkindex/b-big.yml"].startswith(f"the file is {len(big)} bytes")
    assert "alias bomb" in messages["arkindex/c-bomb.yml"]
    assert "not valid UTF-8" in messages["arkindex/d-latin1.yml"]
    assert messages["arkindex/e-syntax.yml"].startswith("invalid YAML at line 2")
    assert "gpu_usage: 'always'" in messages["arkindex/f-invalid.yml"]
    assert "does not hold a YAML mapping" in messages["arkindex/g-list.yml"]
    assert "'good' is declared by arkindex/a-good.yml too" in messages["arkindex/h-same.yml"]
    assert "symbolic link" in messages["arkindex/i-link.yml"]
    (read,) = tree.reads
    link = next(e[2] for e in tree.entries if e[3] == "arkindex/i-link.yml")
    assert link not in read and len(read) == 8


def test_every_error_fits_on_one_line_and_says_how_to_fix_it():
    tree = Tree({"arkindex/bad.yml": "a: 1\n\tb: 2\n", "arkindex/worse.yml": "a: b: c\n"})
    for error in tree.configuration().errors:
        assert "\n" not in error["message"]
        assert error["message"].endswith(")")


def test_no_configuration():
    assert Tree({"README.md": "x"}).configuration().format == "none"


# --- legacy format --------------------------------------------------------------------------------

LEGACY = """\
version: 2
workers:
  - slug: inline
    name: Inline worker
    type: classifier
    description: docs/inline.md
    gpu_usage: disabled
  - workers/*.yml
"""


def legacy_tree(legacy: str = LEGACY, symlinks: dict[str, str] | None = None, **extra: str) -> Tree:
    return Tree(
        {
            ".arkindex.yml": legacy,
            "docs/inline.md": "Classifies pages inline.\n",
            "workers/globbed.yml": "slug: globbed\nname: Globbed\ntype: recognizer\ndescription: docs/globbed.md\n",
            "docs/globbed.md": "Found by a pattern.\n",
            **extra,
        },
        symlinks,
    )


def test_legacy_inline_and_pattern_are_converted():
    config = legacy_tree().configuration()
    assert config.format == "legacy"
    assert config.errors == []
    by_slug = {w.slug: w for w in config.workers}
    assert by_slug["inline"].data == {
        "slug": "inline",
        "display_name": "Inline worker",
        "type": "classifier",
        "gpu_usage": "disabled",
        "description": "Classifies pages inline.",
    }
    assert by_slug["globbed"].data["description"] == "Found by a pattern."
    assert by_slug["globbed"].path == "workers/globbed.yml (via .arkindex.yml)"


def test_legacy_reads_the_files_it_names_in_three_reads_however_many_workers():
    """The legacy file, the files its patterns name, then every description at once: each read may be
    a request to the server, so none is made a worker."""
    many = "".join(
        f"  - slug: inline{n}\n    name: I{n}\n    type: t\n    description: docs/{n}.md\n" for n in range(5)
    )
    tree = legacy_tree(LEGACY + many, **{f"docs/{n}.md": f"Worker {n}.\n" for n in range(5)})
    config = tree.configuration()
    assert config.errors == []
    assert len(config.workers) == 7
    assert config.workers[-1].data["description"] == "Worker 4."
    assert len(tree.reads) == 3
    assert len(tree.reads[2]) == 7  # inline.md, the five docs/N.md and globbed.md


def test_current_format_wins_over_legacy():
    tree = legacy_tree(**{"arkindex/hello.yml": worker_yaml("hello", "Hello")})
    config = tree.configuration()
    assert config.format == "current"
    assert [w.slug for w in config.workers] == ["hello"]


@pytest.mark.parametrize("description", ["/etc/hostname", "../../../../../../../../etc/hostname"])
def test_legacy_description_outside_the_repository_is_refused(description):
    """A description file path must never read a file of the machine running the task."""
    legacy = f"version: 2\nworkers:\n  - slug: w\n    name: W\n    type: t\n    description: {description}\n"
    config = legacy_tree(legacy).configuration()
    assert config.workers == []
    assert "outside the repository" in config.errors[0]["message"]


@pytest.mark.parametrize("pattern", ["/etc/*.yml", "../../*"])
def test_legacy_pattern_outside_the_repository_is_refused(pattern):
    config = legacy_tree(f"version: 2\nworkers:\n  - '{pattern}'\n").configuration()
    assert config.workers == []
    assert "outside the repository" in config.errors[0]["message"]


def test_legacy_pattern_matches_at_any_depth_within_the_repository():
    paths = ["b.yml", "workers/z.yml", "workers/a.yml", "deep/workers/c.yml", "workers/notes.txt"]
    assert match_legacy_pattern("workers/*.yml", paths) == [
        "deep/workers/c.yml",
        "workers/a.yml",
        "workers/z.yml",
    ]
    assert match_legacy_pattern("./workers/../workers/a.yml", paths) == ["workers/a.yml"]
    # A leading `**/` adds nothing: every pattern already matches at any depth, as with `Path.rglob`.
    assert match_legacy_pattern("**/**/*.yml", paths) == match_legacy_pattern("*.yml", paths)
    assert len(match_legacy_pattern("*.yml", paths)) == 4


@pytest.mark.parametrize("pattern", ["/etc/*.yml", "../*.yml", "workers/../../x", ".", "workers/.."])
def test_legacy_pattern_not_inside_the_repository_matches_nothing(pattern):
    assert match_legacy_pattern(pattern, ["workers/a.yml", "x"]) is None


def test_legacy_pattern_does_not_match_the_legacy_file_itself():
    config = legacy_tree("version: 2\nworkers:\n  - '*.yml'\n").configuration()
    assert [w.slug for w in config.workers] == ["globbed"]
    assert config.errors == []


def test_legacy_pattern_file_gets_the_safety_checks():
    tree = legacy_tree(**{"workers/bomb.yml": alias_bomb()}, symlinks={"workers/link.yml": "../docs/x.yml"})
    config = tree.configuration()
    assert [error["file"] for error in config.errors] == ["workers/bomb.yml", "workers/link.yml"]
    assert "alias bomb" in config.errors[0]["message"]
    assert "symbolic link" in config.errors[1]["message"]


def test_legacy_description_file_gets_the_safety_checks():
    legacy = "version: 2\nworkers:\n  - slug: w\n    name: W\n    type: t\n    description: docs/link.md\n"
    config = legacy_tree(legacy, symlinks={"docs/link.md": "inline.md"}).configuration()
    assert config.workers == []
    assert [error["file"] for error in config.errors] == ["docs/link.md"]
    assert "symbolic link" in config.errors[0]["message"]


def test_legacy_duplicate_slugs_are_refused():
    legacy = LEGACY + "  - slug: globbed\n    name: Again\n    type: t\n"
    config = legacy_tree(legacy).configuration()
    assert config.errors == [
        {
            "file": ".arkindex.yml",
            "message": "the worker slug 'globbed' is declared by workers/globbed.yml too "
            "(give each worker its own slug)",
        }
    ]


def test_legacy_patterns_that_match_nothing_are_an_error():
    config = legacy_tree("version: 2\nworkers:\n  - nowhere/*.yml\n").configuration()
    assert config.workers == []
    ((error),) = config.errors
    assert error["file"] == ".arkindex.yml"
    assert "declares no worker" in error["message"]


def test_legacy_file_itself_gets_the_safety_checks():
    config = legacy_tree("version: 2\nworkers: [unclosed\n").configuration()
    assert config.workers == []
    ((error),) = config.errors
    assert error["file"] == ".arkindex.yml"
    assert error["message"].startswith("invalid YAML at line 3")


def test_legacy_without_workers():
    config = legacy_tree("version: 2\n").configuration()
    assert config.format == "legacy"
    assert config.workers == []
    assert config.errors[0]["file"] == ".arkindex.yml"
