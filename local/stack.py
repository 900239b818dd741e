"""``make run``: the local stand-ins for Azure, started together.

Starts Azurite (Blob, Queue, Table) and the Azure ML emulator on free ports
with throw-away data, prints what each serves and the settings a client needs,
and keeps serving until Ctrl-C, then stops both cleanly. The pipeline itself
(blob trigger to a LIVE deployment) runs here once the later issues land.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from local.azureml_emulator import AzureMLEmulator
from local.azurite import Azurite


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("Starting Azurite (Blob, Queue, Table)...", flush=True)
    with Azurite() as azurite:
        print(f"  blob:  {azurite.blob_endpoint}", flush=True)
        print(f"  queue: {azurite.queue_endpoint}", flush=True)
        print(f"  table: {azurite.table_endpoint}", flush=True)
        print("Starting the Azure ML emulator...", flush=True)
        with AzureMLEmulator() as emulator:
            print(f"  management API and scoring: {emulator.base_url}", flush=True)
            print(f"  admin (state, faults):      {emulator.base_url}/_emulator/state", flush=True)
            print("\nSettings for a client of this stack:", flush=True)
            print(f'  export AzureWebJobsStorage="{azurite.connection_string}"', flush=True)
            for name, value in emulator.client_env().items():
                print(f"  export {name}={value}", flush=True)
            print("\nServing until Ctrl-C.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
            print("\nStopping...", flush=True)
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
