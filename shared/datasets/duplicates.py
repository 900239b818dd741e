"""Counting repeated examples in constant memory: a blocked Bloom filter.

A set of the examples seen would grow with the file (about 100 bytes per
example in Python); a filter of fixed size does not. Each example's content
(its duplicate key, see :mod:`~shared.datasets.records`) gets one 64-bit
blake2b digest; its top bits pick one 64-bit word of the filter, its low 36
bits pick ``HASHES`` bits in that word. An example whose bits are all set
already is counted as a repeat.

- A real repeat is never missed: the same key, the same word, the same bits.
- A new example is miscounted when earlier ones happen to have set all its
  bits: :meth:`DuplicateFilter.expected_rate` gives the chance for the file
  at hand, and the report prints it. With the default 16 MiB and 2 million
  distinct examples (about 1 GB of data) it is about 1 in 14,000; with 200,000
  (about 300 MB of 1.5 KB examples) about 1 in 1.7 million.
- Why blake2b: deterministic across machines and processes (``hash()`` is
  salted per process), well spread, and one C call per example. (CRC-32 and
  Adler-32 were measured too: a 64-bit digest from them costs as much once
  the second, independent half is paid for.)
- Why one word per example (a *blocked* filter): the checks are batched into a
  handful of C-level passes, one read and one write of the filter per example
  instead of one per bit.
"""

from __future__ import annotations

import hashlib
import math
import struct
from array import array
from collections import deque
from collections.abc import Sequence
from functools import partial
from itertools import repeat
from operator import and_, eq, itemgetter, or_, rshift
from typing import Final

HASHES: Final = 6
"""Bits set per example (fewer if two coincide), all in one 64-bit word."""

_WORD_BITS: Final = 64
# The mask of an example's bits from 12 digest bits: two positions of 6 bits each.
_MASKS: Final = tuple((1 << (x & 63)) | (1 << (x >> 6)) for x in range(1 << 12))
_MASK_OF: Final = _MASKS.__getitem__
_BLAKE2B_8: Final = partial(hashlib.blake2b, digest_size=8)
_LOW_12: Final = (1 << 12) - 1
# Keys per batch: the words they pick in the default filter are all different
# in about 98% of batches (a batch with a repeated word goes one by one).
_BATCH: Final = 256

METHOD: Final = (
    "approximate: examples whose content (field values; chat: roles and contents) was seen "
    "before, counted with a {size} Bloom filter ({k} bits per example in one 64-bit word, "
    "from a blake2b digest of the content); exact repeats are always counted, false positives can "
    "add a few (expected false-positive rate at the end of this file: {rate:.1e})"
)


def digest(key: bytes) -> int:
    """The 64-bit digest of an example's content: its 8-byte blake2b, little-endian."""
    return int.from_bytes(_BLAKE2B_8(key).digest(), "little")


def digests(keys: Sequence[bytes]) -> tuple[int, ...]:
    """:func:`digest` of each key, in C-level passes."""
    joined = b"".join(map(hashlib.blake2b.digest, map(_BLAKE2B_8, keys)))
    return struct.unpack(f"<{len(keys)}Q", joined)


def _mask(value: int) -> int:
    return _MASKS[value & _LOW_12] | _MASKS[value >> 12 & _LOW_12] | _MASKS[value >> 24 & _LOW_12]


class DuplicateFilter:
    """A fixed-size blocked Bloom filter of example digests (see the module docstring)."""

    __slots__ = ("_shift", "_words")

    def __init__(self, size_bytes: int) -> None:
        """``size_bytes``: a power of two, at least 8 (one word)."""
        words = size_bytes // 8
        if words < 1 or words & (words - 1):
            raise ValueError("the filter's size must be a power of two, at least 8 bytes")
        self._words = array("Q", bytes(size_bytes))
        # The word: the top bits of the first CRC (log2(words) of its 32).
        self._shift = 64 - (words.bit_length() - 1)

    def add(self, value: int) -> bool:
        """Record one example by its :func:`digest`; True if it was seen before (or looks so)."""
        index = value >> self._shift
        mask = _mask(value)
        word = self._words[index]
        self._words[index] = word | mask
        return word & mask == mask

    def add_many(self, values: Sequence[int]) -> int:
        """Record examples in order by their digests; how many were seen before (by earlier
        ones too)."""
        seen = 0
        for start in range(0, len(values), _BATCH):
            seen += self._add_batch(values[start : start + _BATCH])
        return seen

    def _add_batch(self, values: Sequence[int]) -> int:
        indexes = list(map(rshift, values, repeat(self._shift)))
        if len(set(indexes)) != len(indexes):
            # Two keys share a word: the later must see the earlier's bits.
            return sum(map(self.add, values))
        low = map(_MASK_OF, map(and_, values, repeat(_LOW_12)))
        middle = map(_MASK_OF, map(and_, map(rshift, values, repeat(12)), repeat(_LOW_12)))
        high = map(_MASK_OF, map(and_, map(rshift, values, repeat(24)), repeat(_LOW_12)))
        masks = list(map(or_, map(or_, low, middle), high))
        words = self._words
        before = itemgetter(*indexes)(words) if len(indexes) > 1 else (words[indexes[0]],)
        deque(map(words.__setitem__, indexes, map(or_, before, masks)), maxlen=0)
        return sum(map(eq, map(and_, before, masks), masks))

    def expected_rate(self, distinct: int) -> float:
        """The chance that a new example is miscounted after ``distinct`` different ones.

        The examples in a word are Poisson distributed with mean ``distinct /
        words``; in a word holding ``j`` of them a bit is set with probability
        ``q = 1 - (1 - 1/64) ** (HASHES * j)``, and a new example whose
        positions name ``m`` different bits is miscounted with probability
        ``q ** m``. (Checked against the filter itself in the unit tests.)
        """
        words = len(self._words)
        load = distinct / words
        if load == 0:
            return 0.0
        distinct_bits = _distinct_bits()
        spread = 12 * math.sqrt(load) + 20
        rate = 0.0
        for j in range(max(0, int(load - spread)), int(load + spread) + 1):
            poisson = math.exp(j * math.log(load) - load - math.lgamma(j + 1))
            q = 1 - (1 - 1 / _WORD_BITS) ** (HASHES * j)
            rate += poisson * sum(p * q**m for m, p in enumerate(distinct_bits))
        return min(rate, 1.0)


def _distinct_bits() -> list[float]:
    """P(an example's ``HASHES`` positions name m different bits of a word), for each m."""
    chances = [1.0]
    for _ in range(HASHES):
        chances = [
            (chances[m] * m / _WORD_BITS if m < len(chances) else 0.0)
            + (chances[m - 1] * (_WORD_BITS - m + 1) / _WORD_BITS if m > 0 else 0.0)
            for m in range(len(chances) + 1)
        ]
    return chances
