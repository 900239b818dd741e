"""``python -m local.azureml_emulator``: run the emulator in the foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from local.azureml_emulator.emulator import AZURITE_ACCOUNT_KEY, AzureMLEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.azureml_emulator",
        description="Serve the Azure ML emulator over HTTPS until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--speed", type=float, default=1.0, help="emulated clock speed factor")
    parser.add_argument("--webhook", default=None, help="URL that receives Azure ML events")
    parser.add_argument(
        "--storage-key",
        default=AZURITE_ACCOUNT_KEY,
        help="account key used to read training data (default: Azurite's)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the TLS files go")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
    )

    emulator = AzureMLEmulator(
        host=args.host,
        port=args.port,
        speed=args.speed,
        storage_account_key=args.storage_key,
        webhook_url=args.webhook,
        workdir=args.workdir,
    ).start()
    print(f"Azure ML emulator serving {emulator.base_url}", flush=True)
    print("Point the azure-ai-ml SDK at it with:", flush=True)
    for name, value in emulator.client_env().items():
        print(f"  export {name}={value}", flush=True)
    print("An app's managed identity and lifecycle-event topic stand-ins:", flush=True)
    for name, value in emulator.identity_env().items():
        print(f"  export {name}={value}", flush=True)
    print(f"  export EVENTS_TOPIC_ENDPOINT={emulator.topic_endpoint}", flush=True)
    print(f"  export EVENTS_TOPIC_KEY={emulator.topic_key}", flush=True)
    print(f"Admin routes: {emulator.base_url}/_emulator/state (Ctrl-C stops)", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
