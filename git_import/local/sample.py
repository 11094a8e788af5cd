"""Build real Git repositories holding worker configurations (for the demo and the tests)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_ENV = {
    "GIT_AUTHOR_NAME": "Ada Worker",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Worker",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def _git_env() -> dict[str, str]:
    """The process environment with a fixed author and committer, and no system or user git configuration."""
    return {**os.environ, **_ENV}


def worker_yaml(slug: str, name: str, description: str = "A sample worker", type: str = "classifier") -> str:
    return (
        f"slug: {slug}\ndisplay_name: {name}\ntype: {type}\ndescription: {description}\ngpu_usage: disabled\n"
    )


class RepoBuilder:
    """A working repository in which tests write files and commit, pushed to a bare repository."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        self._tick = 0  # commit dates advance one second a commit, so histories are reproducible
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", f"--initial-branch={branch}")

    def git(self, *args: str) -> str:
        env = _git_env()
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{1767225600 + self._tick} +0000"
        out = subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        ).stdout
        return out.strip()

    def commit(
        self,
        message: str,
        files: dict[str, str | bytes | None] | None = None,
        symlinks: dict[str, str] | None = None,
    ) -> str:
        """Write (or delete, with None) files, add symbolic links (name → target), commit them, and
        return the commit hash."""
        for name, link_target in (symlinks or {}).items():
            link = self.path / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(link_target)
            self.git("add", "--", name)
        for name, content in (files or {}).items():
            target = self.path / name
            if content is None:
                self.git("rm", "--quiet", "--", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            self.git("add", "--", name)
        self._tick += 1
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def commits(self, count: int, message: str = "Commit", path: str = "filler.txt") -> str:
        """`count` commits on the current branch, each rewriting `path`, in one `git fast-import`
        (a process per commit would take seconds for a history deeper than the trigger's first clone);
        returns the last one."""
        branch = self.git("symbolic-ref", "HEAD")
        parent = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=self.path,
            env=_git_env(),
            capture_output=True,
        ).stdout.strip()  # nothing in an empty repository: the first commit is a root
        stream = []
        for i in range(count):
            self._tick += 1
            text, content = f"{message} {i}".encode(), b"%d\n" % i
            stream += [
                b"commit %s\n" % branch.encode(),
                b"committer %s <%s> %d +0000\n"
                % (
                    _ENV["GIT_COMMITTER_NAME"].encode(),
                    _ENV["GIT_COMMITTER_EMAIL"].encode(),
                    1767225600 + self._tick,
                ),
                b"data %d\n%s\n" % (len(text), text),
                b"from %s\n" % parent if i == 0 and parent else b"",
                b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content),
            ]
        subprocess.run(
            ["git", "fast-import", "--quiet"],
            cwd=self.path,
            env=_git_env(),
            input=b"".join(stream),
            check=True,
        )
        self.git("reset", "--quiet", "--hard")  # the work tree and index follow the branch
        return self.head()

    def tag(self, name: str, commit: str = "HEAD") -> None:
        """Create or move the lightweight tag `name`."""
        self.git("tag", "--force", name, commit)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def publish(self, bare: Path) -> Path:
        """Create (or update, force) the bare repository `bare` with every branch and tag."""
        if not bare.exists():
            subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True, env=_git_env())
        self.git("push", "--quiet", "--force", "--mirror", str(bare))
        # Point HEAD at our branch, as a hosting service would.
        subprocess.run(
            ["git", f"--git-dir={bare}", "symbolic-ref", "HEAD", f"refs/heads/{self.branch}"],
            check=True,
            env=_git_env(),
        )
        return bare


def make_sample(workdir: Path, bare: Path) -> list[str]:
    """The demo's repository: an initial commit, then three commits declaring two workers.

    Returns the commit hashes, oldest first.
    """
    repo = RepoBuilder(workdir)
    commits = [repo.commit("Initial commit", {"README.md": "# Sample workers\n"})]
    commits.append(
        repo.commit(
            "Add the hello worker", {"arkindex/hello.yml": worker_yaml("hello", "Hello", "Says hello")}
        )
    )
    commits.append(
        repo.commit(
            "Describe the hello worker better",
            {"arkindex/hello.yml": worker_yaml("hello", "Hello", "Says hello to every page")},
        )
    )
    commits.append(
        repo.commit(
            "Add the goodbye worker",
            {"arkindex/goodbye.yml": worker_yaml("goodbye", "Goodbye", "Says goodbye", type="recognizer")},
        )
    )
    repo.publish(bare)
    return commits
