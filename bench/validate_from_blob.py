"""Benchmark: validate generated JSONL datasets streamed from Azurite.

For each size (default 100 MB and 1 GB) it generates a text-completion dataset
straight into a blob (staged blocks; the file never exists in memory or on
local disk), then validates it in a fresh Python process exactly as the blob
trigger does (``BlobDatasetStore.chunks`` into ``shared.datasets.validate``)
and records wall time, throughput and the child's peak RSS.

    .venv/bin/python -m bench.validate_from_blob [--sizes-mb 100 1024]

Results go to ``bench/results/validate_from_blob.json`` and ``.md``. Figures
come from one run on one machine, sizes side by side; they are not test
assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobBlock, BlobServiceClient

from local.azurite import Azurite

RESULTS = Path(__file__).resolve().parent / "results"
CONTAINER = "bench"
BLOCK = 8 << 20

CHILD = r"""
import json, resource, sys, time
from azure.storage.blob import BlobServiceClient
from shared.adapters.blobs import BlobDatasetStore
from shared.datasets import Limits, validate

conn, name = sys.argv[1], sys.argv[2]
service = BlobServiceClient.from_connection_string(
    conn, max_single_get_size=4 << 20, max_chunk_get_size=4 << 20
)
store = BlobDatasetStore(service.get_container_client("bench"))
info = store.info(name)
started = time.perf_counter()
report = validate(store.chunks(name, info.etag), None, Limits(max_file_bytes=4 << 30))
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds,
    "bytes": report.bytes,
    "examples": report.examples,
    "valid": report.valid,
    "duplicates": report.duplicates,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def _example(i: int) -> bytes:
    names = ("Edward", "Rachel", "Priya", "Tomas", "Ines", "Kofi")
    a, b = names[i % 6], names[(i * 7 + 1) % 6]
    record = {
        "prompt": (
            f"Summarize the dialog.\n<dialog>: {a}: {b}, when is review {i}?\n"
            f"{b}: At {1 + i % 11}pm, room {i % 97}.\n{a}: Ok, see you then\n<summary>: "
        ),
        "completion": f"{a} and {b} will meet for review {i} at {1 + i % 11}pm in room {i % 97}.",
    }
    return json.dumps(record).encode() + b"\n"


def generate(service: BlobServiceClient, name: str, size: int) -> int:
    """Write about ``size`` bytes of distinct examples into blob ``name``."""
    blob = service.get_blob_client(CONTAINER, name)
    blocks: list[BlobBlock] = []
    buffer = bytearray()
    written, i = 0, 0
    while written < size:
        line = _example(i)
        buffer += line
        written += len(line)
        i += 1
        if len(buffer) >= BLOCK or written >= size:
            block_id = f"{len(blocks):08d}".encode().hex()
            blob.stage_block(block_id, bytes(buffer))
            blocks.append(BlobBlock(block_id))
            buffer.clear()
    blob.commit_block_list(blocks)
    return written


def measure(connection_string: str, name: str) -> dict[str, float]:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", CHILD, connection_string, name],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1024])
    parser.add_argument(
        "--quick", action="store_true", help="4 MB only, results to a temporary folder"
    )
    args = parser.parse_args()
    out = RESULTS
    if args.quick:
        args.sizes_mb = [4]
        out = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    rows = []
    with Azurite() as azurite:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container(CONTAINER)
        for size_mb in args.sizes_mb:
            name = f"dataset-{size_mb}mb.jsonl"
            print(f"generating {size_mb} MB into Azurite...", flush=True)
            started = time.perf_counter()
            written = generate(service, name, size_mb << 20)
            print(
                f"  {written / 2**20:,.0f} MiB in {time.perf_counter() - started:.1f}s", flush=True
            )
            print("validating (streamed, fresh process)...", flush=True)
            result = measure(azurite.connection_string, name)
            mb = result["bytes"] / 2**20
            row = {
                "size_mib": round(mb, 1),
                "examples": int(result["examples"]),
                "valid": bool(result["valid"]),
                "seconds": round(result["seconds"], 2),
                "throughput_mib_s": round(mb / result["seconds"], 1),
                "peak_rss_mib": round(result["peak_rss_mb"], 1),
            }
            print(f"  {row}", flush=True)
            rows.append(row)
            service.get_blob_client(CONTAINER, name).delete_blob()
    out.mkdir(exist_ok=True)
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor_count": __import__("os").cpu_count(),
    }
    (out / "validate_from_blob.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# Validating datasets streamed from Azurite",
        "",
        f"Run {meta['date']} on {meta['machine']}, {meta['processor_count']} cores, "
        f"Python {meta['python']}.",
        "Peak RSS is the validating process's whole footprint (interpreter and SDK included).",
        "",
        "| size (MiB) | examples | seconds | MiB/s | peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['size_mib']:,} | {r['examples']:,} | {r['seconds']} "
        f"| {r['throughput_mib_s']} | {r['peak_rss_mib']} |"
        for r in rows
    ]
    (out / "validate_from_blob.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
