"""``python -m shared.datasets FILE``: validate a local file, print the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, Final

from shared.datasets.report import Limits, TaskType
from shared.datasets.validator import validate

_READ_SIZE: Final = 1 << 20
_OPTIONS: Final = {
    "max_file_bytes": "--max-file-bytes",
    "max_example_bytes": "--max-example-bytes",
    "min_examples": "--min-examples",
    "max_reported_errors": "--max-errors",
    "prompt_field and completion_field": "--prompt-field and --completion-field",
}


def _read_chunks(stream: Any) -> Iterator[bytes]:
    while chunk := stream.read(_READ_SIZE):
        yield chunk


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.datasets",
        description="Validate a JSONL fine-tuning dataset (text completion or chat), streaming.",
        epilog="Exit status: 0 valid, 1 invalid, 2 usage or I/O error.",
    )
    parser.add_argument("file", metavar="FILE", help="the JSONL file ('-' for standard input)")
    parser.add_argument("--task", choices=[t.value for t in TaskType], help="default: detect")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    defaults = Limits()
    parser.add_argument(
        "--max-errors",
        type=int,
        metavar="N",
        default=defaults.max_reported_errors,
        help=f"errors to list (all are counted; default {defaults.max_reported_errors})",
    )
    parser.add_argument(
        "--min-examples",
        type=int,
        metavar="N",
        default=defaults.min_examples,
        help=f"valid examples required (default {defaults.min_examples})",
    )
    parser.add_argument(
        "--prompt-field",
        metavar="F",
        default=defaults.prompt_field,
        help=f"text completion: the prompt's field (default {defaults.prompt_field!r})",
    )
    parser.add_argument(
        "--completion-field",
        metavar="F",
        default=defaults.completion_field,
        help=f"text completion: the completion's field (default {defaults.completion_field!r})",
    )
    parser.add_argument(
        "--max-example-bytes",
        type=int,
        metavar="N",
        default=defaults.max_example_bytes,
        help=f"longest line allowed (default {defaults.max_example_bytes:,})",
    )
    parser.add_argument(
        "--max-seq-length",
        type=int,
        metavar="N",
        default=defaults.max_seq_length,
        help=f"examples over N tokens are reported (default {defaults.max_seq_length:,})",
    )
    parser.add_argument(
        "--max-seq-policy",
        choices=["warning", "error"],
        default="warning",
        help="examples over --max-seq-length: warnings (default) or errors",
    )
    parser.add_argument(
        "--no-tokens",
        action="store_true",
        help="do not count tokens with the tokenizer (the ~4 characters per token estimate only)",
    )
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        metavar="N",
        default=defaults.max_file_bytes,
        help=f"largest file allowed (default {defaults.max_file_bytes:,})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line: exit status 0 valid, 1 invalid, 2 usage or I/O error."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        limits = Limits(
            max_file_bytes=args.max_file_bytes,
            max_example_bytes=args.max_example_bytes,
            min_examples=args.min_examples,
            max_reported_errors=args.max_errors,
            prompt_field=args.prompt_field,
            completion_field=args.completion_field,
            max_seq_length=args.max_seq_length,
            max_seq_error=args.max_seq_policy == "error",
            count_tokens=not args.no_tokens,
        )
    except ValueError as error:
        message = str(error)
        for name, option in _OPTIONS.items():
            message = message.replace(f"Limits.{name}", option)
        parser.error(message)
    try:
        if args.file == "-":
            report = validate(_read_chunks(sys.stdin.buffer), args.task, limits)
        else:
            with open(args.file, "rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                report = validate(_read_chunks(stream), args.task, limits, size)
    except OSError as error:
        reason = error.strerror or str(error)
        print(f"error: cannot read {args.file}: {reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.valid else 1
