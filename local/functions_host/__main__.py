"""``python -m local.functions_host``: run function_app.py like ``func start`` would.

    python -m local.functions_host [--app-dir DIR] [--settings local.settings.json]
                                   [--port 7071] [--host 127.0.0.1] ...

Runs in the foreground until Ctrl-C or SIGTERM, then stops cleanly: triggers stop,
in-flight invocations get ``--grace-seconds``, the server closes. Exit code 0 after a
clean stop, 1 when the host cannot start (the reason is printed), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from local.functions_host.config import HostStartError, LocalSettings, read_local_settings
from local.functions_host.runtime import DEFAULT_STATE_DIR, HostOptions, HostRuntime

DEFAULT_PORT = 7071


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def configure_logging(verbose: bool = False) -> None:
    """Root logger at INFO on stderr with UTC timestamps; the app's logging goes there too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # The Azure SDKs log every HTTP request at INFO; host.json's usual levels are Warning.
    logging.getLogger("azure").setLevel(logging.WARNING)
    if verbose:
        logging.getLogger("host").setLevel(logging.DEBUG)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.functions_host",
        description="Run an Azure Functions Python (v2 model) app locally: HTTP routes, "
        "blob triggers by container scan, timers, Event Grid webhooks.",
    )
    parser.add_argument("--app-dir", type=Path, default=Path("."), help="default: .")
    parser.add_argument(
        "--settings",
        type=Path,
        help="local.settings.json to read (default: the app dir's, if there is one)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument(
        "--port", type=int, help=f"default: Host.LocalHttpPort in the settings, else {DEFAULT_PORT}"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help=f"where host_keys.json lives (default: <app dir>/{DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--host-id", help="host id in receipts (default: from the app dir)")
    parser.add_argument("--blob-scan-seconds", type=float, default=2.0, help="default: 2")
    parser.add_argument(
        "--blob-retry-seconds",
        type=float,
        default=0.5,
        help="pause between tries of a failing blob invocation (default: 0.5)",
    )
    parser.add_argument(
        "--blob-parallelism",
        type=int,
        help="invocations at once per blob function (default: host.json, else 4)",
    )
    parser.add_argument("--grace-seconds", type=float, default=10.0, help="default: 10")
    parser.add_argument(
        "--override-environment",
        action="store_true",
        help="settings file values win over variables already in the environment",
    )
    parser.add_argument("--ready-file", type=Path, help="write JSON here once serving")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.verbose)
    app_dir: Path = args.app_dir.resolve()
    settings_path: Path | None = args.settings
    if settings_path is None and (app_dir / "local.settings.json").exists():
        settings_path = app_dir / "local.settings.json"
    try:
        settings = read_local_settings(settings_path) if settings_path else LocalSettings({})
    except HostStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if settings_path is None:
        logging.getLogger("host").warning(
            "No local.settings.json in %s; using the environment only", app_dir
        )
    port = args.port or settings.local_http_port or DEFAULT_PORT

    stop = threading.Event()
    signals = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(130)  # a second Ctrl-C: stop waiting for anything
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    runtime = HostRuntime(
        HostOptions(
            app_dir=app_dir,
            settings=settings.values,
            host=args.host,
            port=port,
            state_dir=args.state_dir,
            host_id=args.host_id,
            blob_scan_seconds=args.blob_scan_seconds,
            blob_retry_seconds=args.blob_retry_seconds,
            blob_parallelism=args.blob_parallelism,
            grace_seconds=args.grace_seconds,
            override_environment=args.override_environment,
        )
    )
    try:
        runtime.start()
    except HostStartError as error:
        print(f"error: the host cannot start: {error}", file=sys.stderr, flush=True)
        return 1
    print(runtime.describe_functions(), flush=True)
    print(f"Host running on {runtime.base_url}. Ctrl-C to stop.", flush=True)
    if args.ready_file:
        _write_ready_file(args.ready_file, runtime)
    while not stop.wait(0.5):
        pass
    logging.getLogger("host").info("Stopping (grace period %gs)", args.grace_seconds)
    idle = runtime.stop()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if not idle:
        # Abandon what still runs: worker threads would otherwise hold the exit.
        os._exit(0)
    return 0


def _write_ready_file(path: Path, runtime: HostRuntime) -> None:
    document = {
        "pid": os.getpid(),
        "base_url": runtime.base_url,
        "host_id": runtime.host_id,
        "state_dir": str(runtime.state_dir),
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document), encoding="utf-8")
    temporary.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
