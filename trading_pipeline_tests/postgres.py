"""A real, throwaway PostgreSQL server for tests, run from the installed server binaries.

Tests that must pass on PostgreSQL run against this server, never a mock and never the
machine's own cluster (Debian's package may run one on port 5432; we neither need nor
touch it). The server lives in a temporary folder: data directory, unix socket and log;
it listens on 127.0.0.1 on a free port with trust authentication (test use only) and
fsync off (speed; the data is thrown away), and everything is deleted when it stops.

``initdb`` and ``pg_ctl`` refuse to run as root. As root, the temporary folder is given
to the ``postgres`` OS user and the binaries run under ``runuser -u postgres --``.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "postgres"
_OS_USER_WHEN_ROOT = "postgres"
_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """The server binaries (or the OS user to run them as root) are missing."""


def find_server_bindir() -> Path:
    """Folder with initdb and pg_ctl: the newest Debian version, else whatever is on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: _version_key(Path(path).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    raise PostgresUnavailable("PostgreSQL server binaries not installed (apt-get install postgresql)")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One running server. Use :meth:`start` / :meth:`stop`, or as a context manager."""

    def __init__(self) -> None:
        self.bindir = find_server_bindir()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                import pwd

                self._os_user = pwd.getpwnam(_OS_USER_WHEN_ROOT)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root needs the OS user '{_OS_USER_WHEN_ROOT}' "
                    "(created by apt-get install postgresql)"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root needs runuser (util-linux)")
        self.root: Path | None = None
        self.port: int | None = None
        self._created: set[str] = set()

    # -- paths ---------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    # -- process control -----------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", _OS_USER_WHEN_ROOT, "--", *command]
        # cwd: the postgres user may not be allowed into the caller's working directory.
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
                f"\n{self._log_tail()}"
            )
        return result

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + "\n".join(self.log_file.read_text().splitlines()[-20:])
        except OSError:
            return ""

    def start(self) -> PostgresServer:
        self.root = Path(tempfile.mkdtemp(prefix="tp-postgres-"))
        atexit.register(self.stop)  # in case the session ends without the fixture's teardown
        if self._as_root:
            os.chown(self.root, self._os_user.pw_uid, self._os_user.pw_gid)
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        # The free port can be taken between probing and binding: try a few.
        last_error: Exception | None = None
        for _attempt in range(5):
            self.port = _free_port()
            self._write_settings()
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start")
                return self
            except RuntimeError as exc:
                last_error = exc
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"PostgreSQL test server did not start: {last_error}")

    def _write_settings(self) -> None:
        settings = (
            f"listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.root}'\n"
            # Throwaway data: durability buys nothing here and costs seconds.
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 100\n"
        )
        # postgresql.auto.conf is read last and is meant for generated settings; it is
        # rewritten whole on every attempt so a retry does not stack ports.
        auto_conf = self.data_dir / "postgresql.auto.conf"
        auto_conf.write_text(settings)
        if self._as_root:
            os.chown(auto_conf, self._os_user.pw_uid, self._os_user.pw_gid)

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            # immediate: no checkpoint; the data is deleted next anyway.
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        self.port = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------
    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """SQLAlchemy URL of a database on this server (the password is ignored: trust auth)."""
        assert self.port is not None, "server not started"
        credentials = SUPERUSER if password is None else f"{SUPERUSER}:{password}"
        return f"postgresql+psycopg2://{credentials}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        if not _NAME_PATTERN.match(name):
            raise ValueError(f"database name must match {_NAME_PATTERN.pattern}: {name!r}")
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        self._created.add(name)
        return self.url(name)
