"""A real OpenSSH server on 127.0.0.1 serving bare repositories, for the SSH remote tests.

It runs Debian's `sshd` (openssh-server; `.ci/run` installs it) in the foreground with its own
configuration, a host key and a client key generated for the test, key authentication only, for the
current user (CI runs as root). Git reaches a repository as `ssh://<user>@127.0.0.1:<port>/<path>`.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _keygen(path: Path) -> str:
    """A new ed25519 key pair at `path`; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return Path(f"{path}.pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SSHServer:
    """`with SSHServer(root, workdir) as server:` serves the repositories under `root`."""

    def __init__(self, root: Path, workdir: Path) -> None:
        if not Path(SSHD).exists():
            raise RuntimeError(f"{SSHD} is missing: apt-get install openssh-server (.ci/run does)")
        self.root = root
        self.workdir = workdir
        self.user = getpass.getuser()
        self.port = _free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.host_public = _keygen(workdir / "host_ed25519.key")
        self.client_public = _keygen(workdir / "client_ed25519.key")
        (workdir / "authorized_keys").write_text(self.client_public + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def client_key(self) -> str:
        """The private key a client authenticates with (what REPOSITORY_SSH_KEY holds)."""
        return (self.workdir / "client_ed25519.key").read_text()

    @property
    def known_hosts(self) -> str:
        """A known_hosts line for this server's host key (what REPOSITORY_SSH_KNOWN_HOSTS holds)."""
        key_type, key = self.host_public.split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key}\n"

    def url(self, name: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.root / name}"

    def scp_like(self, name: str) -> str:
        """The scp-like form has no port: tests reach it through an ssh config alias."""
        return f"{self.user}@127.0.0.1:{self.root / name}"

    def start(self) -> SSHServer:
        config = self.workdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.workdir / 'host_ed25519.key'}",
                    f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    # The test's temporary folders are not laid out as a home directory would be.
                    "StrictModes no",
                    "UsePAM no",
                    "LogLevel VERBOSE",
                ]
            )
            + "\n"
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation folder
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "sshd.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while True:  # ready when it accepts connections, bounded
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.workdir / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("sshd did not listen within 10 s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def log(self) -> str:
        return (self.workdir / "sshd.log").read_text(errors="replace")

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sshd_available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh") is not None
