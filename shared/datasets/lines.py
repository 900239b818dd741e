"""Numbered lines of a byte stream in constant memory, and the train/validation split rule."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Final, Literal

BOM: Final = b"\xef\xbb\xbf"


class LineSplitter:
    """Splits byte chunks into numbered lines without ever holding an over-long one.

    The partial line kept between chunks is at most ``max_line_bytes`` plus 4
    bytes (room for a BOM and a CR); once it is longer, the rest of that line is
    skipped up to the next newline and the line comes out as None.
    """

    __slots__ = (
        "_max",
        "_pending",
        "_skip_bom",
        "_skip_cr",
        "_skipped",
        "_skipping",
        "_slack",
        "line",
        "skipped_bytes",
    )

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self._max = max_line_bytes
        self._slack = max_line_bytes + 4
        self._pending = bytearray()
        self._skipping = False
        self._skipped = 0
        self._skip_cr = False
        self._skip_bom = False
        self.line = 0
        """Number of the last line produced."""
        self.skipped_bytes = 0
        """Length (without line end) of the last line produced as None."""

    def _complete(self, line: bytes) -> tuple[int, bytes | None]:
        self.line += 1
        if line[-1:] == b"\r":
            line = line[:-1]
        if self.line == 1 and line[:3] == BOM:
            line = line[3:]
        if len(line) > self._max:
            self.skipped_bytes = len(line)
            return self.line, None
        return self.line, line

    def _skip(self, piece: bytes) -> None:
        if piece:
            self._skipped += len(piece)
            self._skip_cr = piece[-1:] == b"\r"

    def _end_skip(self) -> tuple[int, None]:
        self.line += 1
        size = self._skipped - self._skip_cr
        if self.line == 1 and self._skip_bom:
            size -= 3
        self.skipped_bytes = size
        self._skipping = False
        self._skipped = 0
        self._skip_cr = self._skip_bom = False
        return self.line, None

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | None]]:
        """The lines this chunk completes; consume them all before the next feed."""
        if not chunk:
            return
        parts = chunk.split(b"\n")
        rest = parts.pop()
        if parts:
            first = parts[0]
            if self._skipping:
                self._skip(first)
                yield self._end_skip()
            elif self._pending:
                self._pending += first
                line = bytes(self._pending)
                self._pending = bytearray()
                yield self._complete(line)
            else:
                yield self._complete(first)
            for index in range(1, len(parts)):
                yield self._complete(parts[index])
        if self._skipping:
            self._skip(rest)
        elif rest:
            self._pending += rest
            if len(self._pending) > self._slack:
                self._skipping = True
                self._skip_bom = self.line == 0 and self._pending[:3] == BOM
                self._skip(bytes(self._pending[-1:]))
                self._skipped = len(self._pending)
                self._pending = bytearray()

    def take_block(self, chunk: bytes) -> tuple[bytes, bytes]:
        """(block, rest): the lines this chunk completes, taken whole, and what follows them.

        The block is an LF (the end of the line before it, so that every line
        of the block lies between two LFs), the pending partial line, and the
        chunk up to its last newline; the lines keep their line ends. Hand it
        to ``block_lines`` or ``block_line``, or check it whole and
        ``count_lines`` it. Feed ``rest`` (no newline in it) as usual. While a
        long line is being skipped, the block is empty and ``rest`` is the
        whole chunk.
        """
        cut = 0 if self._skipping else chunk.rfind(b"\n") + 1
        if not cut:
            return b"", chunk
        block = b"".join((b"\n", self._pending, memoryview(chunk)[:cut]))
        self._pending = bytearray()
        return block, chunk[cut:]

    def block_lines(self, block: bytes) -> Iterator[tuple[int, bytes | None]]:
        """The numbered lines of a block from ``take_block``, as ``feed`` gives them."""
        parts = block.split(b"\n")
        for index in range(1, len(parts) - 1):  # between the first LF and the last
            yield self._complete(parts[index])

    def block_line(self, block: bytes, start: int) -> tuple[int, bytes | None, int]:
        """The line of a block from ``take_block`` that starts at ``start`` (after an LF),
        numbered: (number, the line as ``feed`` gives it, where the next one starts)."""
        end = block.index(b"\n", start)
        number, line = self._complete(block[start:end])
        return number, line, end + 1

    def count_lines(self, lines: int) -> None:
        """Number ``lines`` lines of a block from ``take_block`` checked whole."""
        self.line += lines

    def finish(self) -> Iterator[tuple[int, bytes | None]]:
        """The last line if the input does not end with a newline."""
        if self._skipping:
            yield self._end_skip()
        elif self._pending:
            line = bytes(self._pending)
            self._pending = bytearray()
            yield self._complete(line)


def iter_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Numbered lines (1-based) of a byte stream, in constant memory.

    Each line comes without its line end (``\\n`` or ``\\r\\n``) and, on line 1,
    without a leading UTF-8 BOM. A line longer than ``max_line_bytes`` comes out
    as None: it is skipped up to the next newline, never buffered whole. A final
    line without a newline counts; a newline at the very end does not start one.
    """
    splitter = LineSplitter(max_line_bytes)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def split_part(line: bytes, validation_fraction: float) -> Literal["training", "validation"]:
    """Which part of a train/validation split a line belongs to.

    Decided by a hash of the line's bytes alone, so the same line goes to the
    same part on every run and machine, identical lines always share a part
    (duplicates cannot leak across the split), and about
    ``validation_fraction`` of distinct lines go to validation. Exactly:
    trailing ``\\r`` and ``\\n`` bytes are ignored (LF and CRLF copies of a file
    split alike), the 8-byte blake2b digest of the rest is read as a big-endian
    integer ``h``, and the line is for validation when
    ``h / 2**64 < validation_fraction``.
    """
    if not 0.0 <= validation_fraction <= 1.0:
        raise ValueError("validation_fraction must be between 0 and 1")
    digest = hashlib.blake2b(line.rstrip(b"\r\n"), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2.0**64
    return "validation" if point < validation_fraction else "training"
