"""Start real servers for tests on free local ports: the helpers behind our fixtures.

Users can call these in their own tests too::

    with PostgresServer() as pg:
        run_my_pipeline(dsn=pg.dsn)

Servers that cannot start raise :class:`ServerUnavailable` with the reason and what
to install; the fixtures let that error fail the test (never skip), because a test
that cannot run in CI must fail loudly.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Optional

from transforms.base.errors import BeamPipelinesError

__all__ = ["free_port", "PostgresServer", "ServerUnavailable", "wait_for_port"]


class ServerUnavailable(BeamPipelinesError, RuntimeError):
    """A test server could not be started; the message says why and what to install."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 30.0, process=None) -> None:
    """Block until something accepts TCP connections on host:port (or fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerUnavailable(f"server process exited with {process.returncode} before "
                                    f"listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet; not synchronising work
    raise ServerUnavailable(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def _postgres_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise ServerUnavailable(
            f"PostgreSQL's {name} not found: install the Debian package 'postgresql' "
            "(make test does)"
        )
    return found


class PostgresServer:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl) on a free port in a temp dir.

    PostgreSQL refuses to run as root, so as root the cluster is owned by and run as the
    ``postgres`` system user (created by the Debian package).
    """

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.database = "postgres"
        self._dir: Optional[str] = None
        self._running = False

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def _run(self, args: list[str]) -> None:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ServerUnavailable(
                f"{os.path.basename(args[-1] if args[0] == 'runuser' else args[0])} failed: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )

    def start(self) -> PostgresServer:
        initdb = _postgres_bin("initdb")
        self._dir = tempfile.mkdtemp(prefix="beam-pipelines-pg-")
        data = os.path.join(self._dir, "data")
        if os.geteuid() == 0:
            shutil.chown(self._dir, user="postgres")
        self._run([initdb, "-D", data, "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8"])
        self.resume()
        return self

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (``pg_ctl stop -m MODE``): an outage or a
        restart in a test; :meth:`resume` starts it again on the same port."""
        assert self._dir, "the server was never started"
        self._run([_postgres_bin("pg_ctl"), "-D", os.path.join(self._dir, "data"), "-m", mode,
                   "-w", "stop"])
        self._running = False

    def resume(self) -> None:
        """Start the (halted) server and wait until it accepts connections."""
        assert self._dir, "the server was never started"
        options = f"-p {self.port} -c listen_addresses={self.host} -k {self._dir} -c fsync=off"
        self._run([_postgres_bin("pg_ctl"), "-D", os.path.join(self._dir, "data"), "-o", options,
                   "-l", os.path.join(self._dir, "log"), "-w", "-t", "60", "start"])
        self._running = True
        wait_for_port(self.host, self.port, timeout=60)

    def stop(self) -> None:
        if self._dir:
            try:
                if self._running:
                    self._run([_postgres_bin("pg_ctl"), "-D", os.path.join(self._dir, "data"),
                               "-m", "immediate", "-w", "stop"])
            finally:
                self._running = False
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
