"""A private PostgreSQL cluster for outage tests: initdb in a temporary
directory, on a free port of 127.0.0.1, with the machine's PostgreSQL
binaries. Stopping it never touches the shared server on 5432.

PostgreSQL refuses to run as root; when this process is root the cluster
runs as the ``postgres`` user (runuser).
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

from .processes import free_port, wait_for


def binaries():
    """The newest /usr/lib/postgresql/<version>/bin with initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PrivatePostgres:
    """``host``: the address it listens on and is reached at; ``prefix``: a
    command prefix for its server commands (``ip netns exec NS`` runs it in a
    network namespace: bench/multihost.py); ``trust``: networks (CIDR) whose
    clients it lets in without a password, besides loopback."""

    def __init__(self, port=None, host="127.0.0.1", prefix=(), trust=()):
        self.bin = binaries()
        self.host = host
        self._prefix = list(prefix)
        self.trust = list(trust)
        if not self.bin:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="cmms-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self._as = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, name="cmms"):
        return f"postgres://postgres@{self.host}:{self.port}/{name}"

    def _run(self, *args, check=True, prefix=True):
        command = [*(self._prefix if prefix else ()), *self._as, *args]
        return subprocess.run(command, check=check, capture_output=True, text=True)

    def init(self):
        self._run(f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        if self.trust:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as hba:
                hba.writelines(f"host all all {network} trust\n" for network in self.trust)
        return self

    def start(self):
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=off -c max_connections=200"
        self._run(f"{self.bin}/pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "30", "start")
        return self

    def stop(self, mode="immediate"):
        """``immediate``: like a crash (connections cut, no checkpoint)."""
        self._run(f"{self.bin}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "30", "stop", check=False,
                  prefix=False)  # a signal through the pid file: works even when the namespace is gone

    def create_database(self, name="cmms"):
        import psycopg

        def connect():
            try:
                return psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres",
                                       autocommit=True, connect_timeout=2)
            except psycopg.OperationalError:
                return None

        conn = wait_for(connect, timeout=20, interval=0.2, message=f"PostgreSQL on port {self.port}")
        with conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self):
        self.stop()
        time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)
