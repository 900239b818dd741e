"""P2: dataset validation throughput and memory against a msgspec floor and the naive way.

Three ways to check the same file, each run in a fresh child process that times
its own work (imports excluded) and reports its peak RSS:

- **project**: the validator's command line, ``shared.datasets.cli.main([FILE,
  "--task", TASK, "--json"])`` (1 MiB reads, every check, statistics,
  duplicates, SHA-256);
- **floor**: 1 MiB reads, split lines, each line decoded by ``msgspec`` into
  typed Structs (roles as a ``Literal``), then the checks the types cannot
  express (non-empty and not blank texts; chat: a user message, the last from
  the assistant). No statistics, duplicates or hashing: the cheapest honest check;
- **naive**: ``[json.loads(line) for line in open(FILE)]``, then the same checks.

Files (seeded, written to a temporary directory, streaming, deleted at the end):
~200 MB of chat and of text-completion records with 1-2 KB lines (escaped
newlines, quotes and tabs; about 20% of lines hold non-ASCII text, written as
UTF-8, a few as ``\\u`` escapes), and ~50 MB of short (~230 B) text records. Each
round runs the three commands in a rotated order (A/B alternation), and every
figure is a ratio to the floor's time in the same round. Memory: the project's
peak RSS on a 1 GB chat file against a 100 MB one (same generator).

    .venv/bin/python -m bench.p2_validation [--rounds N] [--quick]

Writes ``bench/results/p2_validation.json`` (raw figures) and ``.md`` (a section);
``--quick`` writes ``p2_validation.quick.*`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = Path(__file__).resolve().parent / "results"
NAME: Final = "p2_validation"
READ_SIZE: Final = 1 << 20
COMMANDS: Final = (
    "project",
    "project+tokens",
    "project+tokens@2048",
    "floor",
    "floor+books",
    "naive",
)
TARGET_RATIO: Final = 0.5
TOKENS_RATIO: Final = 0.5
"""Counting tokens may at most double the validator's time (issue 11)."""
MB: Final = 1_000_000

Kind = Literal["chat", "text", "short"]

# --- Data ---

# Vocabularies, split once by _Pool (space-separated to keep them short here).
_WORDS: Final = (
    "the model answer summary dialog meeting customer order account report data "
    "training example deploy endpoint review schedule invoice delivery support team "
    "project budget quarter result analysis question response policy update request "
    "please could would should because however therefore although meanwhile finally "
    "tomorrow yesterday morning evening office remote network server latency storage"
)
_ACCENTED: Final = "café résumé naïve façade déjà Zürich São Ångström señor über"
_CJK: Final = "模型 数据 训练 会议 摘要 東京 日本語 데이터 회의"
_EMOJI: Final = "🙂 🎉 🚀 👍 ✅ 📦 🔥"


def _sentence(rng: random.Random, vocabulary: dict[str, list[str]]) -> str:
    words = [rng.choice(vocabulary["words"]) for _ in range(rng.randint(6, 18))]
    roll = rng.random()
    # ~1.5% of sentences carry non-ASCII, so about 20% of 1-2 KB lines do.
    if roll < 0.010:
        words[rng.randrange(len(words))] = rng.choice(vocabulary["accented"])
    elif roll < 0.0125:
        words[rng.randrange(len(words))] = rng.choice(vocabulary["cjk"])
    elif roll < 0.015:
        words.append(rng.choice(vocabulary["emoji"]))
    text = " ".join(words).capitalize()
    roll = rng.random()
    if roll < 0.05:
        text = f'He said "{text}"'
    elif roll < 0.07:
        text = f"{text}:\tdone"
    elif roll < 0.075:
        text = f"{text} (C:\\temp)"
    return text + rng.choice((".", ".", "?", "!"))


class _Pool:
    """Pre-built sentences, so writing hundreds of MB stays fast; lines stay distinct."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        vocabulary = {
            "words": _WORDS.split(),
            "accented": _ACCENTED.split(),
            "cjk": _CJK.split(),
            "emoji": _EMOJI.split(),
        }
        self.sentences = [_sentence(self.rng, vocabulary) for _ in range(20_000)]

    def text(self, n: int, tag: str) -> str:
        rng = self.rng
        out = [tag]
        size = len(tag)
        while size < n:
            sentence = rng.choice(self.sentences)
            out.append("\n\n" if rng.random() < 0.1 else " ")
            out.append(sentence)
            size += len(sentence) + 1
        return "".join(out)


def _chat_record(pool: _Pool, i: int) -> dict[str, Any]:
    rng = pool.rng
    budget = rng.randint(1000, 1900)  # characters: 1-2 KB lines once escaped and framed
    messages: list[dict[str, str]] = []
    if rng.random() < 0.6:
        messages.append({"role": "system", "content": pool.text(budget // 8, "You are helpful.")})
    turns = 2 if rng.random() < 0.25 else 1
    share = (budget - sum(len(m["content"]) for m in messages)) // (3 * turns)
    for turn in range(turns):
        messages.append({"role": "user", "content": pool.text(share, f"Case {i}.{turn}:")})
        messages.append({"role": "assistant", "content": pool.text(2 * share, "Answer:")})
    return {"messages": messages}


def _text_record(pool: _Pool, i: int) -> dict[str, Any]:
    budget = pool.rng.randint(1000, 1900)
    return {
        "prompt": pool.text(budget // 3, f"Summarize case {i}:"),
        "completion": pool.text(budget - budget // 3, "Summary:"),
    }


def _short_record(pool: _Pool, i: int) -> dict[str, Any]:
    rng = pool.rng
    names = ("Edward", "Rachel", "Priya", "Tomas", "Ines", "Kofi")
    a, b = rng.choice(names), rng.choice(names)
    hour, room = 1 + i % 11, i % 97
    return {
        "prompt": (
            f"Summarize the dialog.\n<dialog>: {a}: {b}, when is review {i}?\n"
            f"{b}: At {hour}pm, room {room}.\n{a}: Ok, see you then\n<summary>: "
        ),
        "completion": f"{a} and {b} will meet for review {i} at {hour}pm in room {room}.",
    }


_RECORDS: Final[dict[str, Callable[[_Pool, int], dict[str, Any]]]] = {
    "chat": _chat_record,
    "text": _text_record,
    "short": _short_record,
}


def write_dataset(path: Path, kind: Kind, size: int, seed: int) -> tuple[int, int]:
    """Write about ``size`` bytes of ``kind`` records, streaming; (bytes, lines)."""
    pool = _Pool(seed)
    make = _RECORDS[kind]
    written = lines = 0
    buffer: list[bytes] = []
    buffered = 0
    with path.open("wb") as out:
        while written < size:
            record = make(pool, lines)
            # Most writers emit UTF-8; some escape everything (\\uXXXX).
            ascii_only = pool.rng.random() < 0.05
            line = json.dumps(record, ensure_ascii=ascii_only).encode() + b"\n"
            buffer.append(line)
            buffered += len(line)
            written += len(line)
            lines += 1
            if buffered >= READ_SIZE:
                out.write(b"".join(buffer))
                buffer.clear()
                buffered = 0
        out.write(b"".join(buffer))
    return written, lines


# --- The three commands, run in a child process ---


def _read_lines(path: str, sha: Any = None) -> Iterator[bytes]:
    pending = b""
    with open(path, "rb") as stream:
        while chunk := stream.read(READ_SIZE):
            if sha is not None:
                sha.update(chunk)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            yield from lines
    if pending:
        yield pending


def _good_text(prompt: object, completion: object) -> bool:
    return (
        type(prompt) is str
        and type(completion) is str
        and bool(prompt)
        and bool(completion)
        and not prompt.isspace()
        and not completion.isspace()
    )


def _good_chat(roles: list[object], contents: list[object]) -> bool:
    return (
        bool(roles)
        and all(type(c) is str and c and not c.isspace() for c in contents)
        and all(r in ("system", "user", "assistant") for r in roles)
        and "user" in roles
        and roles[-1] == "assistant"
    )


class _Bookkeeping:
    """What the validator must also do per example: its duplicate filter (a blake2b
    digest of the content setting 6 bits of one word of a 16 MiB blocked Bloom filter,
    in batches: the project's own ``DuplicateFilter``), and per chunk the file's SHA-256."""

    def __init__(self) -> None:
        from shared.datasets.duplicates import DuplicateFilter, digests

        self.filter = DuplicateFilter(16 << 20)
        self.digests = digests
        self.pending: list[bytes] = []
        self.duplicates = 0

    def add(self, key: str) -> None:
        self.pending.append(key.encode())
        if len(self.pending) >= 4096:
            self.flush()

    def flush(self) -> None:
        self.duplicates += self.filter.add_many(self.digests(self.pending))
        self.pending.clear()


def _run_floor(path: str, task: str, bookkeeping: bool = False) -> int:
    import msgspec

    # defstruct: class syntax would need the annotations resolvable at module level.
    message = msgspec.defstruct(
        "Message", [("role", Literal["system", "user", "assistant"]), ("content", str)]
    )
    chat_type = msgspec.defstruct("Chat", [("messages", list[message])])  # type: ignore[valid-type]
    text_type = msgspec.defstruct("Text", [("prompt", str), ("completion", str)])

    errors = (msgspec.DecodeError, msgspec.ValidationError)
    books = _Bookkeeping() if bookkeeping else None
    sha = hashlib.sha256() if bookkeeping else None
    valid = 0
    if task == "chat":
        chat: Any = msgspec.json.Decoder(chat_type)
        for line in _read_lines(path, sha):
            try:
                messages = chat.decode(line).messages
            except errors:
                continue
            roles = [m.role for m in messages]
            contents = [m.content for m in messages]
            if _good_chat(roles, contents):
                valid += 1
                if books is not None:
                    books.add("\x1f".join(x for m in messages for x in (m.role, m.content)))
    else:
        text: Any = msgspec.json.Decoder(text_type)
        for line in _read_lines(path, sha):
            try:
                record = text.decode(line)
            except errors:
                continue
            if _good_text(record.prompt, record.completion):
                valid += 1
                if books is not None:
                    books.add(f"{record.prompt}\x1f{record.completion}")
    if books is not None:
        books.flush()
    return valid


def _run_naive(path: str, task: str) -> int:
    with open(path, encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream]
    valid = 0
    for record in records:
        if task == "chat":
            messages = record.get("messages")
            if type(messages) is list and all(type(m) is dict for m in messages):
                roles = [m.get("role") for m in messages]
                valid += _good_chat(roles, [m.get("content") for m in messages])
        else:
            valid += _good_text(record.get("prompt"), record.get("completion"))
    return valid


def _run_project(path: str, task: str, tokens: bool = False, max_seq: int | None = None) -> int:
    from shared.datasets.cli import main as cli

    options = [] if tokens else ["--no-tokens"]
    if max_seq is not None:
        options += ["--max-seq-length", str(max_seq)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli([path, "--task", task, "--json", *options])
    examples: int = json.loads(out.getvalue())["examples"]
    return examples


_RUNNERS: Final[dict[str, Callable[[str, str], int]]] = {
    "project": _run_project,
    "project+tokens": partial(_run_project, tokens=True),
    "project+tokens@2048": partial(_run_project, tokens=True, max_seq=2048),
    "floor": _run_floor,
    "floor+books": partial(_run_floor, bookkeeping=True),
    "naive": _run_naive,
}


def _child(command: str, path: str, task: str) -> int:
    runner = _RUNNERS[command]
    # Imports are not the work measured: load them before the clock starts.
    if command.startswith("project"):
        import shared.datasets.cli  # noqa: F401
    elif command.startswith("floor"):
        import msgspec  # noqa: F401
    started, cpu = time.perf_counter(), time.process_time()
    valid = runner(path, task)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "valid": valid, "peak_rss_mib": rss_mib}))
    return 0


def measure(command: str, path: Path, task: str) -> dict[str, float]:
    """One fresh process: its work time, valid examples found and peak RSS."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{NAME}", "--child", command, str(path), task],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed on {path.name}: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


# --- Rounds and figures ---


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_file(path: Path, task: str, rounds: int, warmup: int, label: str) -> dict[str, Any]:
    """Rounds of the commands in rotated order; ratios pair by pair, round by round."""
    size = path.stat().st_size
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in COMMANDS}
    for index in range(warmup + rounds):
        shift = index % len(COMMANDS)
        order = COMMANDS[shift:] + COMMANDS[:shift]
        results = {command: measure(command, path, task) for command in order}
        kept = index >= warmup
        note = "" if kept else " (warm-up)"
        times = " ".join(f"{c} {results[c]['seconds']:.2f}s" for c in order)
        print(f"  {label} round {index + 1 - warmup}{note}: {times}", file=sys.stderr)
        if kept:
            for command in COMMANDS:
                runs[command].append(results[command])

    def speed(of: str, over: str, clock: str) -> dict[str, float]:
        """Throughput of ``of`` as a fraction of ``over``'s, pair by pair (time ratio)."""
        pairs = zip(runs[of], runs[over], strict=True)
        return _spread([b[clock] / a[clock] for a, b in pairs])

    figures: dict[str, Any] = {"bytes": size, "task": task, "commands": {}}
    for command in COMMANDS:
        seconds = [r["seconds"] for r in runs[command]]
        figures["commands"][command] = {
            "seconds": seconds,
            "cpu": [r["cpu"] for r in runs[command]],
            "wall": [r["wall"] for r in runs[command]],
            "mb_per_s": _spread([size / MB / s for s in seconds]),
            "peak_rss_mib": _spread([r["peak_rss_mib"] for r in runs[command]]),
            "valid": sorted({int(r["valid"]) for r in runs[command]}),
            # 1 = as fast as the floor; 0.5 = half its throughput.
            "vs_floor": speed(command, "floor", "seconds"),
            "vs_floor_cpu": speed(command, "floor", "cpu"),
        }
    for other in ("naive", "floor+books"):
        figures[f"project_vs_{other}"] = speed("project", other, "seconds")
        figures[f"project_vs_{other}_cpu"] = speed("project", other, "cpu")
    figures["tokens_vs_project"] = speed("project+tokens", "project", "seconds")
    figures["tokens_vs_project_cpu"] = speed("project+tokens", "project", "cpu")
    figures["tokens2048_vs_project"] = speed("project+tokens@2048", "project", "seconds")
    figures["tokens2048_vs_project_cpu"] = speed("project+tokens@2048", "project", "cpu")
    return figures


def rss_scaling(small: Path, large: Path) -> dict[str, Any]:
    """The project's peak RSS on a large file against a small one (same generator)."""
    out: dict[str, Any] = {}
    for label, path in (("small", small), ("large", large)):
        print(f"  project on {label} ({path.stat().st_size / MB:,.0f} MB)", file=sys.stderr)
        result = measure("project", path, "chat")
        out[label] = {"bytes": path.stat().st_size, **result}
    out["ratio"] = out["large"]["peak_rss_mib"] / out["small"]["peak_rss_mib"]
    return out


def _fmt(spread: dict[str, float], digits: int = 2, unit: str = "x") -> str:
    m, lo, hi = spread["median"], spread["min"], spread["max"]
    return f"{m:.{digits}f}{unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def _markdown(report: dict[str, Any]) -> str:
    meta, files, rss = report["meta"], report["files"], report["rss"]
    rerun = ".venv/bin/python -m bench.p2_validation" + (" --quick" if meta["quick"] else "")
    lines = [
        "## P2: dataset validation throughput and memory",
        "",
        f"`{rerun}` ({meta['date']}, {meta['cpus']} cores, Python {meta['python']}; "
        f"{meta['rounds']} rounds after {meta['warmup']} warm-up, the commands in a rotated "
        "order each round, each in a fresh process timing its own work).",
        "",
        "Commands: **project** is the validator's CLI without the tokenizer (`python -m "
        "shared.datasets FILE --task T --no-tokens`, in-process in the child); "
        "**project+tokens** the same with exact tokens (the default: every example's bound "
        "against MAX_SEQ_LENGTH 4096, a 1-in-64 content sample encoded); "
        "**project+tokens@2048** the same with `--max-seq-length 2048` (these files' longest "
        "lines, 2.2 KB, then have bounds over the limit and are encoded to be judged exactly); "
        "**floor** reads 1 MiB "
        "chunks, splits lines and decodes "
        "each with msgspec into typed Structs, then checks what the types cannot (non-empty, not "
        "blank, a user message, the assistant last); **floor+books** is the floor plus the "
        "bookkeeping the validator must also do in its pass (SHA-256 of the file; the "
        "validator's own duplicate filter, a blake2b digest of each example's content setting "
        "6 bits of one word of a 16 MiB blocked Bloom filter, in batches); **naive** "
        "is `[json.loads(line) for line in f]`, then the checks.",
        "",
        "Throughput as a fraction of the floor's on the same file in the same round (1.00x = "
        "as fast as the floor): median (min-max) over rounds, from wall time and from CPU time "
        "(the machine is shared: CPU time is the steadier of the two). Peak RSS as a multiple "
        "of the floor's.",
        "",
        "| file | command | throughput vs floor (wall) | (CPU) | peak RSS vs floor "
        "| valid examples |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, fig in files.items():
        floor_rss = fig["commands"]["floor"]["peak_rss_mib"]["median"]
        title = f"{label} ({fig['bytes'] / MB:,.0f} MB, {fig['line_bytes']:,} B/line)"
        for command in COMMANDS:
            c = fig["commands"][command]
            rss_ratio = c["peak_rss_mib"]["median"] / floor_rss
            lines.append(
                f"| {title if command == COMMANDS[0] else ''} | {command} "
                f"| {_fmt(c['vs_floor'])} | {_fmt(c['vs_floor_cpu'])} | {rss_ratio:.2f}x "
                f"| {', '.join(f'{v:,}' for v in c['valid'])} |"
            )
    lines += [
        "",
        "Project throughput as a fraction of the others' (above 1 = the project is faster):",
    ]
    lines += [""]
    lines += [
        f"- {label}: vs naive {_fmt(fig['project_vs_naive'])} wall, "
        f"{_fmt(fig['project_vs_naive_cpu'])} CPU; vs floor+books "
        f"{_fmt(fig['project_vs_floor+books'])} wall, {_fmt(fig['project_vs_floor+books_cpu'])} CPU"
        for label, fig in files.items()
    ]
    lines += [
        "",
        f"Project peak RSS on {rss['large']['bytes'] / MB:,.0f} MB of chat against "
        f"{rss['small']['bytes'] / MB:,.0f} MB: **{rss['ratio']:.2f}x** "
        f"({rss['large']['peak_rss_mib']:.0f} vs {rss['small']['peak_rss_mib']:.0f} MiB).",
        "",
        "Absolute figures, for orientation only (medians; wall-time MB/s, peak RSS MiB): "
        + "; ".join(
            f"{label}: "
            + ", ".join(
                f"{c} {fig['commands'][c]['mb_per_s']['median']:.0f} MB/s "
                f"{fig['commands'][c]['peak_rss_mib']['median']:.0f} MiB"
                for c in COMMANDS
            )
            for label, fig in files.items()
        )
        + ".",
        "",
        "Targets (issue 10):",
        "",
    ]
    lines += report["targets"]
    return "\n".join(lines) + "\n"


def _targets(files: dict[str, Any], rss: dict[str, Any]) -> list[str]:
    out = []
    for label, fig in files.items():
        project = fig["commands"]["project"]
        books = fig["commands"]["floor+books"]
        wall, cpu = project["vs_floor"]["median"], project["vs_floor_cpu"]["median"]
        met = "met" if min(wall, cpu) >= TARGET_RATIO else "NOT met"
        line = (
            f"- Validation >= {TARGET_RATIO}x the floor's throughput, {label} lines: **{met}** "
            f"({wall:.2f}x wall, {cpu:.2f}x CPU)."
        )
        if met != "met":
            line += (
                f" Cause: the bookkeeping alone (floor+books) brings the floor down to "
                f"{books['vs_floor_cpu']['median']:.2f}x (CPU); the project runs at "
                f"{fig['project_vs_floor+books_cpu']['median']:.2f}x of that."
            )
        out.append(line)
    slowest = min(
        min(fig["project_vs_naive"]["median"], fig["project_vs_naive_cpu"]["median"])
        for fig in files.values()
    )
    met = "met" if slowest > 1 else "NOT met"
    out.append(f"- Faster than the naive way on every file: **{met}** (slowest: {slowest:.2f}x).")
    for label, fig in files.items():
        wall, cpu = fig["tokens_vs_project"]["median"], fig["tokens_vs_project_cpu"]["median"]
        met = "met" if min(wall, cpu) >= TOKENS_RATIO else "NOT met"
        out.append(
            f"- Exact tokens cost at most 2x the validation without them, {label} lines: "
            f"**{met}** (throughput {wall:.2f}x wall, {cpu:.2f}x CPU of project's)."
        )
        wall, cpu = (
            fig["tokens2048_vs_project"]["median"],
            fig["tokens2048_vs_project_cpu"]["median"],
        )
        out.append(
            f"  - With MAX_SEQ_LENGTH 2048 (measured, no target): {wall:.2f}x wall, {cpu:.2f}x "
            "CPU of project's throughput: every example whose bound is over the limit is encoded."
        )
    met = "met" if rss["ratio"] <= 1.1 else "NOT met"
    out.append(
        f"- Flat memory (peak RSS at 1 GB about that at 100 MB): **{met}** ({rss['ratio']:.2f}x)."
    )
    return out


def _child_main(argv: list[str]) -> int:
    command, path, task = argv
    return _child(command, path, task)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--child"]:
        return _child_main(args_in[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds per file")
    parser.add_argument("--quick", action="store_true", help="tiny files, one round (smoke test)")
    parser.add_argument("--keep", metavar="DIR", help="write the files here and keep them")
    args = parser.parse_args(args_in)
    if args.quick:
        sizes = {"chat": 2 * MB, "text": 2 * MB, "short": 1 * MB}
        rss_sizes = (1 * MB, 5 * MB)
        rounds, warmup = args.rounds or 1, 0
    else:
        sizes = {"chat": 200 * MB, "text": 200 * MB, "short": 50 * MB}
        rss_sizes = (100 * MB, 1000 * MB)
        rounds, warmup = args.rounds or 6, 1
    seeds = {"chat": 1, "text": 2, "short": 3}
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.keep:
            folder = Path(args.keep)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="p2-")))
        files: dict[str, Any] = {}
        for kind, size in sizes.items():
            path = folder / f"{kind}.jsonl"
            print(f"writing {kind} ({size / MB:,.0f} MB) to {path}", file=sys.stderr)
            written, count = write_dataset(path, kind, size, seeds[kind])  # type: ignore[arg-type]
            task = "chat" if kind == "chat" else "text"
            print(f"measuring {kind}", file=sys.stderr)
            figures = run_file(path, task, rounds, warmup, kind)
            figures["lines"] = count
            figures["line_bytes"] = round(written / count)
            files[kind] = figures
            if not args.keep:
                path.unlink()
        small, large = folder / "rss-small.jsonl", folder / "rss-large.jsonl"
        print("writing the memory files (chat)", file=sys.stderr)
        write_dataset(small, "chat", rss_sizes[0], 11)
        write_dataset(large, "chat", rss_sizes[1], 11)
        print("measuring memory", file=sys.stderr)
        rss = rss_scaling(small, large)
    report: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "rounds": rounds,
            "warmup": warmup,
            "quick": args.quick,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "files": files,
        "rss": rss,
    }
    report["targets"] = _targets(files, rss)
    RESULTS.mkdir(exist_ok=True)
    # A smoke test's tiny figures must not replace the recorded ones.
    stem = f"{NAME}.quick" if args.quick else NAME
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    (RESULTS / f"{stem}.md").write_text(markdown)
    print(markdown)
    print(f"done in {report['meta']['seconds']}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
