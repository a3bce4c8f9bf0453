"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` into a temporary directory,
on a free 127.0.0.1 port, stopped at the end (Debian's ``postgresql`` package; as root the
server runs as the ``postgres`` user, which initdb requires)."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from helpers import free_port, wait_until

BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)
_names = itertools.count()


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (the newest installed), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    dirs = sorted(d for pattern in BIN_GLOBS for d in glob.glob(pattern) if os.path.exists(f"{d}/initdb"))
    return Path(dirs[-1]) if dirs else None


class PostgresServer:
    def __init__(self) -> None:
        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="intilery-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        data = self.root / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")  # fmt: skip
        import psycopg

        wait_until(lambda: self._connects(psycopg), timeout=60, what="PostgreSQL to accept connections")
        return self

    def _connects(self, psycopg) -> bool:
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
