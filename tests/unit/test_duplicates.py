"""The duplicate filter: repeats never missed, batches equal to one by one, the rate it states."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from shared.datasets.duplicates import HASHES, DuplicateFilter, digest, digests


def _keys(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(64):x}\x1f{i}".encode() for i in range(count)]


def test_digest_is_the_little_endian_8_byte_blake2b() -> None:
    expected = hashlib.blake2b(b"prompt\x1fcompletion", digest_size=8).digest()
    assert digest(b"prompt\x1fcompletion").to_bytes(8, "little") == expected


def test_every_repeat_is_counted() -> None:
    keys = _keys(5_000, seed=1)
    seen = DuplicateFilter(1 << 16)
    values = digests(keys)
    assert list(values) == list(map(digest, keys))
    first = seen.add_many(values)
    assert first < 5  # false positives only, and few at this load
    assert seen.add_many(values) == 5_000
    assert all(map(seen.add, values[:100]))


@pytest.mark.parametrize("size", [1 << 10, 1 << 14])
def test_batches_count_as_one_by_one(size: int) -> None:
    """In order, the later of two keys sharing a word sees the earlier's bits."""
    keys = _keys(3_000, seed=2)
    rng = random.Random(3)
    stream = keys + [rng.choice(keys) for _ in range(2_000)]
    rng.shuffle(stream)
    one, many = DuplicateFilter(size), DuplicateFilter(size)
    values = digests(stream)
    assert many.add_many(values) == sum(map(one.add, values))
    assert many._words == one._words  # same filter after either way


@pytest.mark.parametrize("size", [1 << 16, 1 << 15])
def test_the_stated_rate_matches_what_happens(size: int) -> None:
    """False positives while 40,000 distinct keys go into 8,192 / 4,096 words (load up to ~10)."""
    seen = DuplicateFilter(size)
    observed = expected = 0.0
    for number, key in enumerate(_keys(40_000, seed=4)):
        if number % 50 == 0:  # the rate for the next 50 keys
            expected += 50 * seen.expected_rate(number - int(observed))
        observed += seen.add(digest(key))
    assert expected > 50  # enough to compare
    assert abs(observed - expected) <= 4 * math.sqrt(expected), (observed, expected)


def test_rate_is_zero_when_empty_and_grows_with_load() -> None:
    seen = DuplicateFilter(16 << 20)
    rates = [seen.expected_rate(n) for n in (0, 10_000, 200_000, 2_000_000)]
    assert rates[0] == 0.0
    assert rates == sorted(rates)
    assert 1 / 15_000 < rates[3] < 1 / 13_000  # the module docstring's "about 1 in 14,000"
    assert 1 / 1.8e6 < rates[2] < 1 / 1.6e6  # "about 1 in 1.7 million"
    assert HASHES == 6


def test_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        DuplicateFilter(3000)
