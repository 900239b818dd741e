"""Run Azurite (the Azure Storage emulator: Blob, Queue, Table) as a child process.

Azurite comes from ``node_modules`` in the repository root (``make install`` puts it
there), so the version is the one pinned in ``package.json``, not whatever is on PATH.

As a library::

    with Azurite() as azurite:
        client = BlobServiceClient.from_connection_string(azurite.connection_string)

From a shell, in the foreground until Ctrl-C::

    python -m local.azurite [--blob-port N] [--queue-port N] [--table-port N] [--location DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from local.child import ChildExited, ChildNotReady, ChildProcess, StartStop, log_tail
from local.ports import free_port, is_listening

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

HOST = "127.0.0.1"
# The fixed development account every Azurite instance accepts; it is public
# (documented by Microsoft), not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

LOG_FILE_NAME = "azurite.log"

# When we picked the ports ourselves, another process may take one between our probe
# and Azurite's bind; start again on fresh ports this many times in total.
_AUTO_PORT_ATTEMPTS = 3
_EADDRINUSE = re.compile(r"EADDRINUSE\b.*:(\d+)\s*$", re.MULTILINE)


class AzuriteStartError(RuntimeError):
    """Azurite exited during start-up or did not open its ports in time."""


@dataclass(frozen=True)
class _Ports:
    blob: int
    queue: int
    table: int


class Azurite(StartStop):
    """One Azurite process serving Blob, Queue and Table on 127.0.0.1.

    Contract:

    * ``start()`` returns once all three ports accept connections, or raises
      ``AzuriteStartError`` (with the tail of Azurite's log) after stopping whatever
      it started. ``FileNotFoundError`` means Azurite or Node.js is not installed.
    * Ports left as None are picked free at start; the endpoint properties are only
      valid after ``start()``.
    * ``data_dir`` None means a fresh temporary directory, deleted by ``stop()``; a
      given ``data_dir`` is created if needed and kept, so data persists across runs.
      Azurite's output goes to ``azurite.log`` there, truncated at each start.
    * ``stop()`` terminates Azurite's whole process group (SIGTERM, then SIGKILL
      after ``stop_timeout`` s). It is idempotent and safe after a failed start.
    * Used as a context manager, it starts on entry and always stops on exit.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        blob_port: int | None = None,
        queue_port: int | None = None,
        table_port: int | None = None,
        *,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._requested_data_dir = data_dir
        self._requested_ports = (blob_port, queue_port, table_port)
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._process: ChildProcess | None = None
        self._ports: _Ports | None = None
        self._data_dir: Path | None = None
        self._owns_data_dir = False

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Launch Azurite and wait until Blob, Queue and Table accept connections."""
        if self._process is not None:
            raise RuntimeError("Azurite is already started")
        executable = _azurite_executable()
        if self._requested_data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="azurite-"))
            self._owns_data_dir = True
        else:
            self._data_dir = self._requested_data_dir.resolve()
            self._data_dir.mkdir(parents=True, exist_ok=True)

        auto_ports = None in self._requested_ports
        attempts = _AUTO_PORT_ATTEMPTS if auto_ports else 1
        try:
            for attempt in range(1, attempts + 1):
                self._ports = self._pick_ports()
                self._launch(executable)
                try:
                    self._wait_until_ready()
                    return
                except AzuriteStartError:
                    taken = _port_in_use(self.log_tail())
                    self._terminate()
                    # Retry only when a port we picked was stolen; a busy port the
                    # caller asked for stays busy.
                    if taken is None or taken in self._requested_ports or attempt == attempts:
                        raise
        except BaseException:
            # Includes KeyboardInterrupt while waiting: never leave Azurite running.
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate Azurite and delete the data directory if it was temporary."""
        self._terminate()
        if self._owns_data_dir and self._data_dir is not None:
            # Best effort: a leftover temp dir must not mask the caller's own error.
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._owns_data_dir = False

    def wait(self) -> int:
        """Block until Azurite exits on its own; return its exit code."""
        return self._require_process().wait()

    # --- connection details --------------------------------------------------------

    @property
    def account_name(self) -> str:
        return ACCOUNT_NAME

    @property
    def account_key(self) -> str:
        return ACCOUNT_KEY

    @property
    def blob_endpoint(self) -> str:
        return self._endpoint(self._require_ports().blob)

    @property
    def queue_endpoint(self) -> str:
        return self._endpoint(self._require_ports().queue)

    @property
    def table_endpoint(self) -> str:
        return self._endpoint(self._require_ports().table)

    @property
    def connection_string(self) -> str:
        """Connection string for the Blob, Queue and Table SDK clients."""
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def data_dir(self) -> Path:
        """Azurite's workspace (``--location``); valid once started."""
        if self._data_dir is None:
            raise RuntimeError("Azurite has not been started")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE_NAME

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of Azurite's output, or "" if there is none yet."""
        try:
            path = self.log_path
        except RuntimeError:  # not started: no log yet
            return ""
        # The log is small with --silent, but never read more than its end.
        return log_tail(path, lines)

    # --- internals -------------------------------------------------------------------

    def _pick_ports(self) -> _Ports:
        blob, queue, table = self._requested_ports
        chosen: set[int] = {p for p in self._requested_ports if p is not None}

        def pick(requested: int | None) -> int:
            if requested is not None:
                return requested
            # free_port() may hand back a port we already chose, as it was released.
            port = free_port()
            while port in chosen:
                port = free_port()
            chosen.add(port)
            return port

        return _Ports(blob=pick(blob), queue=pick(queue), table=pick(table))

    def _launch(self, executable: Path) -> None:
        ports = self._require_ports()
        command = [
            str(executable),
            "--silent",
            # Azurite phones home to Application Insights by default.
            "--disableTelemetry",
            # The Python SDKs may speak a newer API version than this Azurite knows.
            "--skipApiVersionCheck",
            # Account name from the path (http://127.0.0.1:PORT/devstoreaccount1).
            "--disableProductStyleUrl",
            "--loose",
            "--location",
            str(self.data_dir),
            "--blobHost",
            HOST,
            "--blobPort",
            str(ports.blob),
            "--queueHost",
            HOST,
            "--queuePort",
            str(ports.queue),
            "--tableHost",
            HOST,
            "--tablePort",
            str(ports.table),
        ]
        # Own process group: stop() can signal everything Azurite spawned, and a
        # Ctrl-C in the terminal reaches only us, so we stop it in order.
        self._process = ChildProcess.start(command, log_path=self.log_path, cwd=self.data_dir)

    def _wait_until_ready(self) -> None:
        child = self._require_process()
        ports = self._require_ports()
        pending = [ports.blob, ports.queue, ports.table]

        def listening() -> bool:
            pending[:] = [p for p in pending if not is_listening(HOST, p, timeout=0.5)]
            return not pending

        # The child's exit is checked on every round, so a crash (bad flag, port
        # taken) fails at once instead of after the timeout.
        try:
            child.wait_ready(listening, self._startup_timeout, interval=0.1)
        except ChildExited:
            raise self._exited(child) from None
        except ChildNotReady:
            raise AzuriteStartError(
                f"Azurite did not accept connections on {HOST} port(s) "
                f"{', '.join(map(str, pending))} within {self._startup_timeout:g} s."
                f"{self._log_excerpt()}"
            ) from None
        # Azurite also exits with code 0 on an unknown option, and a port answered by
        # some other process must not be mistaken for ours: catch a late exit.
        if child.poll() is not None:
            raise self._exited(child)

    def _exited(self, child: ChildProcess) -> AzuriteStartError:
        return AzuriteStartError(
            f"Azurite exited with code {child.returncode} during start-up.{self._log_excerpt()}"
        )

    def _terminate(self) -> None:
        child = self._process
        if child is None:
            return
        self._process = None
        child.stop(self._stop_timeout, group=True)

    def _log_excerpt(self) -> str:
        tail = self.log_tail()
        if not tail:
            return f" Azurite wrote nothing to {self.log_path}."
        return f" Last lines of {self.log_path}:\n{tail}"

    def _endpoint(self, port: int) -> str:
        return f"http://{HOST}:{port}/{ACCOUNT_NAME}"

    def _require_ports(self) -> _Ports:
        if self._ports is None:
            raise RuntimeError("Azurite has not been started; its ports are not known yet")
        return self._ports

    def _require_process(self) -> ChildProcess:
        if self._process is None:
            raise RuntimeError("Azurite is not running")
        return self._process


def _azurite_executable() -> Path:
    """The pinned Azurite launcher; raise FileNotFoundError with a fix if missing."""
    if not AZURITE_BIN.exists():
        raise FileNotFoundError(
            f"Azurite is not installed ({AZURITE_BIN} is missing). "
            f"Run `make install` in {REPO_ROOT} to install it from package.json."
        )
    # The launcher is a `#!/usr/bin/env node` script; without node, env fails in a
    # way that is much harder to read than this.
    if shutil.which("node") is None:
        raise FileNotFoundError("Azurite needs Node.js (>= 20), but `node` is not on PATH.")
    return AZURITE_BIN


def _port_in_use(log: str) -> int | None:
    """The port in Node's "listen EADDRINUSE: ... HOST:PORT" message, if logged."""
    match = _EADDRINUSE.search(log)
    return int(match.group(1)) if match else None


# --- command line ------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. from a supervisor) takes the same clean path as Ctrl-C.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run Azurite in the foreground until Ctrl-C or SIGTERM; return an exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m local.azurite",
        description="Run Azurite (Blob, Queue, Table) on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--blob-port", type=int, help="default: a free port")
    parser.add_argument("--queue-port", type=int, help="default: a free port")
    parser.add_argument("--table-port", type=int, help="default: a free port")
    parser.add_argument(
        "--location",
        type=Path,
        help="workspace directory to keep data in (default: a temp dir deleted on exit)",
    )
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    azurite = Azurite(
        data_dir=args.location,
        blob_port=args.blob_port,
        queue_port=args.queue_port,
        table_port=args.table_port,
    )
    try:
        with azurite:
            print(azurite.connection_string, flush=True)
            print(
                f"Azurite is running, data in {azurite.data_dir}"
                f"{'' if args.location else ' (deleted on exit)'}. Ctrl-C to stop.",
                file=sys.stderr,
                flush=True,
            )
            code = azurite.wait()
            print(
                f"Azurite exited unexpectedly with code {code}.\n{azurite.log_tail()}",
                file=sys.stderr,
            )
            return 1
    except KeyboardInterrupt:
        print("Azurite stopped.", file=sys.stderr)
        return 0
    except (AzuriteStartError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
