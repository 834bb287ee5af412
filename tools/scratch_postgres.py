"""A throw-away PostgreSQL server for tests and benchmarks (Debian's ``postgresql`` package).

``with scratch_postgres() as url:`` runs ``initdb`` in a temporary folder, starts the server
on a free local port (TCP on 127.0.0.1 only, trust authentication, no fsync), creates the
database ``cnn_course`` and yields its URL, ``postgresql://grader@127.0.0.1:<port>/
cnn_course``; the server and its files are gone afterwards. ``initdb`` refuses to run as
root, so as root the server runs as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def postgres_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: on PATH, else Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest version), else None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    for initdb in reversed(candidates):
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def scratch_postgres(database: str = "cnn_course"):
    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server not found: install the Debian package "
                                "'postgresql'")
    as_root = os.geteuid() == 0
    prefix = []
    top = Path(tempfile.mkdtemp(prefix="cnn-pg-"))
    if as_root:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(top, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = top / "data", top / "server.log"
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}

    def run(*cmd):
        proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, env=env,
                              cwd=top, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "grader", "--auth=trust",
            "-E", "UTF8", "--no-locale", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
            "-o", f"-p {port} -k {top} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off", "start")
        started = True
        import psycopg

        for _ in range(50):
            try:
                conn = psycopg.connect(host="127.0.0.1", port=port, user="grader",
                                        dbname="postgres", autocommit=True)
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"PostgreSQL did not accept connections:\n{log.read_text()}")
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        yield f"postgresql://grader@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, env=env, cwd=top, timeout=120)
        shutil.rmtree(top, ignore_errors=True)
