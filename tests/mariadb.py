"""A throwaway MariaDB server for tests: its own data directory, socket and free port.

tests/run.sh installs the Debian package when the machine lacks it; here we only start,
stop and restart the server (same port and data, so clients must reconnect).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from kuberl import pki
from kuberl.local import free_port

USER = "kuberl"
PASSWORD = "kuberl-test-password"


def _binary(*names: str) -> str | None:
    for name in names:
        for directory in ("", "/usr/sbin/", "/usr/bin/"):
            path = shutil.which(directory + name) if directory else shutil.which(name)
            if path:
                return path
    return None


def available() -> str | None:
    """Why no MariaDB can start here, or None when one can."""
    if not _binary("mariadbd", "mysqld"):
        return "no mariadbd binary (apt-get install mariadb-server)"
    if not _binary("mariadb-install-db", "mysql_install_db"):
        return "no mariadb-install-db binary"
    return None


@dataclass
class MariaDB:
    root: Path
    port: int = 0
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "mariadbd.log"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def ca(self) -> Path:
        """The CA of the server's TLS certificate (for 127.0.0.1 and localhost)."""
        return self.root / "tls" / "ca.crt"

    def url(self, database: str = "rl_analytics") -> str:
        return f"mysql://{USER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls) -> MariaDB:
        # Not under pytest's tmp dirs: their 0700 parents keep the mysql user out.
        root = Path(tempfile.mkdtemp(prefix="kuberl-mariadb-"))
        server = cls(root)
        as_root = os.geteuid() == 0
        if as_root:
            shutil.chown(root, "mysql", "mysql")
        subprocess.run([_binary("mariadb-install-db", "mysql_install_db"), f"--datadir={server.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        *(["--user=mysql"] if as_root else [])],
                       check=True, capture_output=True, timeout=120)
        server.port = free_port()
        authority = pki.make_authority(root / "tls", "ca", "kuberl test MariaDB CA")
        pki.issue(authority, root / "tls", "server", "mariadb", dns_names=("localhost",), ips=("127.0.0.1",),
                  server=True)
        if as_root:
            for path in (root / "tls", *(root / "tls").iterdir()):
                shutil.chown(path, "mysql", "mysql")
        server.start()
        with pymysql.connect(unix_socket=str(server.socket), user="root", autocommit=True) as conn, \
                conn.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (USER, PASSWORD))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%'")
        return server

    def start(self, timeout: float = 30.0) -> None:
        args = [_binary("mariadbd", "mysqld"), f"--datadir={self.datadir}", "--bind-address=127.0.0.1",
                f"--port={self.port}", f"--socket={self.socket}", "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
                f"--pid-file={self.root / 'mysqld.pid'}", "--skip-log-bin", "--max-connections=200",
                f"--ssl-ca={self.ca}", f"--ssl-cert={self.root / 'tls' / 'server.crt'}",
                f"--ssl-key={self.root / 'tls' / 'server.key'}"]
        if os.geteuid() == 0:
            args.append("--user=mysql")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                                connect_timeout=1, ssl_disabled=True).close()
                return
            except pymysql.err.OperationalError as err:
                if err.args[0] == 1045:  # access denied: up, but the user is not created yet
                    return
            time.sleep(0.1)
        raise TimeoutError(f"mariadbd not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(timeout=60)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
