"""Fast direct tests of the pure parts of git_import/rules/configuration.py: the image template check and the
safety checks on configuration files (size, UTF-8, aliases, symlinks, duplicate slugs), then the two
formats. Trees and blobs are given as data, exactly as `git ls-tree` and `git cat-file` return them."""

from __future__ import annotations

import hashlib

import pytest

from git_import.errors import ConfigError
from git_import.local.sample import worker_yaml
from git_import.rules.configuration import (
    MAX_FILE_SIZE,
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

    def read(self, oids: list[str]) -> dict[str, bytes]:
        self.reads.append(list(oids))
        return {oid: self.blobs[oid] for oid in oids}

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
    with pytest.raises(ConfigError) as excinfo:
        parse_yaml("arkindex/bomb.yml", alias_bomb())
    assert "arkindex/bomb.yml" in str(excinfo.value)
    assert "alias" in str(excinfo.value)


def test_a_few_aliases_are_fine():
    data = parse_yaml("a.yml", "base: &b {x: 1}\none: *b\ntwo: *b\n")
    assert data == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 1}}


def test_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match="refers to itself"):
        parse_yaml("a.yml", "a: &a [*a]\n")


@pytest.mark.parametrize("depth", [150, 5000])
def test_deep_nesting_is_refused_without_crashing(depth):
    with pytest.raises(ConfigError, match="levels deep"):
        parse_yaml("a.yml", "[" * depth + "]" * depth)


def test_syntax_error_is_the_files_own_error():
    tree = Tree({"arkindex/bad.yml": "slug: [unclosed\n", "arkindex/good.yml": worker_yaml("good", "Good")})
    config = tree.configuration()
    assert [w.slug for w in config.workers] == ["good"]
    assert config.errors[0]["file"] == "arkindex/bad.yml"
    assert config.errors[0]["message"].startswith("invalid YAML")


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
    (error,) = config.errors
    assert error["file"] == "arkindex/bad.yml"
    assert "description" in error["message"]


def test_file_over_one_mebibyte_is_refused():
    big = worker_yaml("big", "Big") + "# " + "x" * MAX_FILE_SIZE + "\n"
    tree = Tree({"arkindex/big.yml": big})
    with pytest.raises(ConfigError) as excinfo:
        tree.configuration()
    assert "arkindex/big.yml" in str(excinfo.value)
    assert "1 MiB" in str(excinfo.value)


def test_invalid_utf8_is_refused():
    tree = Tree({"arkindex/latin1.yml": worker_yaml("w", "Caf\xe9").encode("latin-1")})
    with pytest.raises(ConfigError) as excinfo:
        tree.configuration()
    assert "arkindex/latin1.yml is not valid UTF-8" in str(excinfo.value)
    assert "UTF-8" in excinfo.value.hint


def test_symlink_is_refused_before_any_read():
    tree = Tree({"README.md": "x"}, symlinks={"arkindex/link.yml": "../README.md"})
    with pytest.raises(ConfigError) as excinfo:
        tree.configuration()
    assert "arkindex/link.yml is a symbolic link" in str(excinfo.value)
    assert tree.reads == []


def test_duplicate_slugs_are_refused():
    tree = Tree(
        {"arkindex/one.yml": worker_yaml("same", "One"), "arkindex/two.yml": worker_yaml("same", "Two")}
    )
    with pytest.raises(ConfigError) as excinfo:
        tree.configuration()
    message = str(excinfo.value)
    assert "arkindex/one.yml" in message and "arkindex/two.yml" in message and "'same'" in message


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


def legacy_tree(legacy: str = LEGACY, **extra: str) -> Tree:
    return Tree(
        {
            ".arkindex.yml": legacy,
            "docs/inline.md": "Classifies pages inline.\n",
            "workers/globbed.yml": "slug: globbed\nname: Globbed\ntype: recognizer\ndescription: docs/globbed.md\n",
            "docs/globbed.md": "Found by a pattern.\n",
            **extra,
        }
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
    tree = legacy_tree(**{"workers/bomb.yml": alias_bomb()})
    with pytest.raises(ConfigError, match=r"workers/bomb\.yml"):
        tree.configuration()


def test_legacy_duplicate_slugs_are_refused():
    legacy = LEGACY + "  - slug: globbed\n    name: Again\n    type: t\n"
    with pytest.raises(ConfigError, match="both declare the worker slug 'globbed'"):
        legacy_tree(legacy).configuration()


def test_legacy_without_workers():
    config = legacy_tree("version: 2\n").configuration()
    assert config.format == "legacy"
    assert config.workers == []
    assert config.errors[0]["file"] == ".arkindex.yml"
