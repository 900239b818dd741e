"""``FunctionsHost``: the local host as a child process, for tests and scripts.

The app runs in its own process, as under Core Tools (where the Python worker is a
process of its own): its settings live in that process's environment only, its
module-level state starts fresh on every start, and a restart is a real restart.

    with FunctionsHost(app_dir, values, port=free_port()) as host:
        requests.get(f"{host.base_url}/api/health")
        requests.get(f"{host.base_url}/api/runs", headers={"x-functions-key": host.function_key})

Contract:

* ``start()`` returns once the host serves, or raises ``HostStartError`` with the
  host's own error and the tail of its log; nothing is left running.
* ``stop()`` sends SIGTERM (the host finishes or abandons in-flight invocations
  within ``grace_seconds``), then SIGKILL if it has not exited in time. Idempotent.
* ``values`` are the app settings (``local.settings.json`` ``Values``); they win over
  variables of this process's environment, which the host inherits otherwise.
* ``state_dir`` (keys, the settings file written for the child, ``host.log``)
  defaults to a temporary directory removed by ``stop()``; pass one to keep the
  keys and the log across restarts. Receipts and timer status live in storage.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.child import ChildExited, ChildNotReady, ChildProcess, StartStop
from local.functions_host import keys as host_keys
from local.functions_host.config import HostStartError, default_host_id, read_host_json

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_FILE = "host.log"
READY_FILE = "ready.json"
SETTINGS_FILE = "local.settings.json"


class FunctionsHost(StartStop):
    def __init__(
        self,
        app_dir: Path,
        values: Mapping[str, str],
        port: int = 7071,
        *,
        host: str = "127.0.0.1",
        state_dir: Path | None = None,
        host_id: str | None = None,
        blob_scan_seconds: float = 2.0,
        blob_retry_seconds: float = 0.5,
        blob_parallelism: int | None = None,
        grace_seconds: float = 10.0,
        startup_timeout: float = 60.0,
        python: str = sys.executable,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.values = dict(values)
        self.port = port
        self.host = host
        self._requested_state_dir = state_dir
        self._host_id = host_id
        self._options = {
            "--blob-scan-seconds": str(blob_scan_seconds),
            "--blob-retry-seconds": str(blob_retry_seconds),
            "--grace-seconds": str(grace_seconds),
        }
        if blob_parallelism is not None:
            self._options["--blob-parallelism"] = str(blob_parallelism)
        self.grace_seconds = grace_seconds
        self.startup_timeout = startup_timeout
        self.python = python
        self._process: ChildProcess | None = None
        self._state_dir: Path | None = None
        self._owns_state_dir = False
        self._keys: host_keys.HostKeys | None = None
        self._ready: dict[str, Any] = {}
        self.returncode: int | None = None

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("the host is already started")
        if self._requested_state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="functions-host-"))
            self._owns_state_dir = True
        else:
            self._state_dir = self._requested_state_dir.resolve()
            self._state_dir.mkdir(parents=True, exist_ok=True)
        state_dir = self._state_dir
        settings_path = state_dir / SETTINGS_FILE
        _write_private(settings_path, json.dumps({"IsEncrypted": False, "Values": self.values}))
        ready_path = state_dir / READY_FILE
        ready_path.unlink(missing_ok=True)
        command = [
            self.python,
            "-m",
            "local.functions_host",
            "--app-dir",
            str(self.app_dir),
            "--settings",
            str(settings_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--state-dir",
            str(state_dir),
            "--ready-file",
            str(ready_path),
            "--override-environment",
        ]
        if self._host_id:
            command += ["--host-id", self._host_id]
        for option, value in self._options.items():
            command += [option, value]
        environment = {**os.environ, **self.values, "PYTHONUNBUFFERED": "1"}
        python_path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        environment["PYTHONPATH"] = os.pathsep.join(python_path)
        self.returncode = None
        # A session of its own: a terminal's Ctrl-C reaches us, and we stop it.
        self._process = ChildProcess.start(
            command, log_path=self.log_path, cwd=self.app_dir, env=environment, append=True
        )
        try:
            self._wait_ready(ready_path)
        except BaseException:
            self.stop()
            raise
        self._keys = host_keys.with_overrides(host_keys.load_or_create(state_dir), self.values)

    def _wait_ready(self, ready_path: Path) -> None:
        try:
            self._require_process().wait_ready(ready_path.exists, self.startup_timeout)
        except ChildExited as exited:
            raise HostStartError(
                f"the Functions host exited with code {exited.returncode} during "
                f"start-up.\n{self.log_tail()}"
            ) from None
        except ChildNotReady:
            raise HostStartError(
                f"the Functions host did not start within {self.startup_timeout:g}s.\n"
                f"{self.log_tail()}"
            ) from None
        self._ready = json.loads(ready_path.read_text(encoding="utf-8"))

    def stop(self) -> None:
        child = self._process
        if child is not None:
            self._process = None
            # SIGTERM to the host alone: it finishes or abandons its invocations and
            # stops what it started; the group is killed only if it overstays.
            self.returncode = child.stop(self.grace_seconds + 15, group=False)
        if self._owns_state_dir and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._owns_state_dir = False

    def kill(self) -> None:
        """SIGKILL the host and everything it started, as a crash would: no clean-up."""
        self.returncode = self._require_process().kill()
        self._process = None

    # --- what a client needs -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; HTTP functions are under ``/api``."""
        return f"http://{self.host}:{self.port}"

    def url(self, route: str) -> str:
        """The URL of an HTTP function's route, e.g. ``url("runs/abc")``.

        Below host.json's ``extensions.http.routePrefix`` (``api`` by default).
        """
        prefix = read_host_json(self.app_dir).route_prefix
        path = "/".join(part for part in (prefix, route.lstrip("/")) if part)
        return f"{self.base_url}/{path}"

    def eventgrid_url(self, function_name: str) -> str:
        """The Event Grid webhook of a function, system key included."""
        return (
            f"{self.base_url}/runtime/webhooks/eventgrid?functionName={function_name}"
            f"&code={self.system_key('eventgrid_extension')}"
        )

    def blobs_url(self, function_name: str) -> str:
        """The blob extension's webhook for an Event Grid-source blob trigger, as
        scripts/postdeploy.sh subscribes it: ``Host.Functions.NAME`` and the
        ``blobs_extension`` system key."""
        return (
            f"{self.base_url}/runtime/webhooks/blobs?functionName=Host.Functions.{function_name}"
            f"&code={self.system_key('blobs_extension')}"
        )

    @property
    def function_key(self) -> str:
        return self._require_keys().function_key

    @property
    def master_key(self) -> str:
        return self._require_keys().master_key

    def system_key(self, name: str) -> str:
        return self._require_keys().system_key(name)

    @property
    def host_id(self) -> str:
        """The id in receipt and timer status paths (known before start, too)."""
        if self._ready.get("host_id"):
            return str(self._ready["host_id"])
        chosen = self._host_id or self.values.get("AzureFunctionsWebHost__hostid")
        return (chosen or default_host_id(self.app_dir)).lower()[:32]

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            raise RuntimeError("the host has not been started")
        return self._state_dir

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    def log_text(self) -> str:
        """Everything the host printed so far (all starts with this state dir)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except (OSError, RuntimeError):
            return ""

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text()
        if not text:
            return "(the host wrote nothing)"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _require_process(self) -> ChildProcess:
        if self._process is None:
            raise RuntimeError("the host is not running")
        return self._process

    def _require_keys(self) -> host_keys.HostKeys:
        if self._keys is None:
            raise RuntimeError("the host has not been started; its keys are not known yet")
        return self._keys


def _write_private(path: Path, text: str) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)
