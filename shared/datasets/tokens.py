"""Exact token counts with the base model's own tokenizer, in one streaming pass.

The tokenizer is Mistral 7B v0.1's SentencePiece model (vocabulary 32,000),
shipped in the package (``data/mistral-v0.1.tokenizer.model``, taken from
mistral-common 1.13.1, Apache-2.0, see ``data/LICENSE.mistral-common``) and
checked against :data:`TOKENIZER_SHA256` before it is used: another file is
refused, never silently used. It is read with the ``sentencepiece`` wheel
(one package, no dependencies, 0.05 s and 22 MB to load), not mistral-common
(25 packages, 211 MB installed, 0.5 s to load) for one 493 KB file.

What an example's tokens are (say so wherever they are shown):

- text: ``BOS + encode(prompt + completion) + EOS``, the concatenation the
  model is trained on;
- chat (Mistral v1 instruct): ``BOS``, then per user turn
  ``encode("[INST] " + content + " [/INST]")``, per assistant turn
  ``encode(content) + EOS``; system contents are put before the first user
  turn's content, ``"\\n\\n"`` between them.

Azure ML's fine-tuning component formats and tokenizes the data itself, so
its count can differ from these by a token or two per example.

Cost: SentencePiece encodes about 5-6 MB of text per second per core, 35-40
times the validator's own work, so not every example of a large file is
encoded. Two things keep the figures exact where they decide something:

- **Too long for the model is exact for every example.** Each encoded
  string gives at most one token per UTF-8 byte plus one (the identity
  normaliser, every piece covers at least one byte, one dummy prefix), so
  :func:`token_bound` from the example's content key is a proven upper
  bound. Only an example whose bound is over ``max_seq_length`` is encoded.
- **Statistics from a deterministic sample.** Files up to
  ``exact_bytes`` (1 MiB by default) are encoded whole. In larger ones,
  the examples whose content digest (the duplicate filter's) has its top 6
  bits zero, 1 in 64, are encoded; the total is the sampled tokens per
  character times all characters. The same content is always in or out of
  the sample, so the figures do not depend on line order.
"""

from __future__ import annotations

import functools
import hashlib
import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, eq, gt, mul, rshift
from pathlib import Path
from typing import Any, Final

TOKENIZER_FILE: Final = Path(__file__).parent / "data" / "mistral-v0.1.tokenizer.model"
TOKENIZER_SHA256: Final = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
TOKENIZER_NAME: Final = "Mistral 7B v0.1 (sentencepiece, vocabulary 32,000)"
SAMPLE_BITS: Final = 6
"""1 in 2 ** SAMPLE_BITS examples of a large file are encoded for the statistics."""
EXACT_BYTES: Final = 1 << 20
HEAD_EXAMPLES: Final = 64
"""Also encoded in a large file: its first examples, used only if none is in the sample."""
METHOD: Final = (
    "Mistral 7B v0.1 tokenizer: text = BOS + prompt + completion + EOS; chat = BOS, "
    "'[INST] user [/INST]' per user turn (system content before the first), "
    "assistant content + EOS per assistant turn"
)
# Per encoded string at most one token per UTF-8 byte, plus one; per message at
# most 16 template and special tokens, BOS once (see token_bound).
_PER_SEPARATOR: Final = 10
_BATCH: Final = 256


class TokenizerError(Exception):
    """The tokenizer file is missing or not the one pinned."""


class Tokenizer:
    """The pinned SentencePiece model: encode strings, no special tokens added."""

    def __init__(self, path: Path = TOKENIZER_FILE, sha256: str = TOKENIZER_SHA256) -> None:
        import sentencepiece  # here: only validation needs it

        try:
            data = path.read_bytes()
        except OSError as error:
            raise TokenizerError(f"tokenizer file {path} cannot be read: {error}") from error
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise TokenizerError(
                f"tokenizer file {path} has sha256 {found}, not the pinned {sha256}: "
                "refusing to count tokens with another tokenizer"
            )
        self._model = sentencepiece.SentencePieceProcessor(model_proto=data)
        self.bos = self._model.bos_id()
        self.eos = self._model.eos_id()

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self._model.encode(text)
        return ids

    def lengths(self, texts: list[str]) -> list[int]:
        """How many tokens each text encodes to (one call for the list)."""
        if not texts:
            return []
        encoded: list[list[int]] = self._model.encode(texts)
        return list(map(len, encoded))


@functools.cache
def pinned_tokenizer() -> Tokenizer:
    """The vendored tokenizer, loaded once per process."""
    return Tokenizer()


Strings = tuple[list[str], int]
"""What an example encodes: the strings, and the special tokens added (BOS, EOS)."""


def text_strings(prompt: str, completion: str) -> Strings:
    return [prompt + completion], 2


def chat_strings(roles: Sequence[str], contents: Sequence[str]) -> Strings:
    system = [c for r, c in zip(roles, contents, strict=True) if r == "system"]
    strings: list[str] = []
    specials = 1  # BOS
    for role, content in zip(roles, contents, strict=True):
        if role == "user":
            turn = "\n\n".join([*system, content])
            system = []
            strings.append(f"[INST] {turn} [/INST]")
        elif role == "assistant":
            strings.append(content)
            specials += 1  # EOS
    return strings, specials


def count(tokenizer: Tokenizer, strings: Strings) -> int:
    """An example's tokens, from :func:`text_strings` or :func:`chat_strings`."""
    texts, specials = strings
    return sum(tokenizer.lengths(texts)) + specials


def token_bound(key_bytes: int, separators: int) -> int:
    """A proven upper bound of an example's tokens from its duplicate key.

    ``key_bytes`` is the key's length in UTF-8 bytes, ``separators`` how many
    ``\\x1f`` bytes it holds. Text: the key is ``prompt \\x1f completion``, one
    string of ``key_bytes - 1`` bytes: at most ``key_bytes`` tokens, plus BOS
    and EOS. Chat: the key is ``role \\x1f content`` per message, joined by
    ``\\x1f``, so it holds at least 6 bytes per message beyond the contents
    (a role of 4 or more bytes, two separators less one), while each message
    adds at most 16 tokens beyond its content's bytes (``[INST] `` and
    `` [/INST]`` are 15 bytes, one dummy prefix; or EOS and a dummy prefix):
    at most 10 per message more than the key's bytes, BOS once. A content
    holding ``\\x1f`` only raises the bound.
    """
    return key_bytes + _PER_SEPARATOR * (separators + 1) + 2


@dataclass(frozen=True)
class TokenStats:
    """Tokens per example and in all, exact or from the sample (``exact``)."""

    method: str
    tokenizer: str
    tokenizer_sha256: str
    exact: bool
    sample: str
    counted: int
    """Examples encoded for the statistics."""
    total: int
    """All valid examples' tokens: exact, or estimated from the sample."""
    min: int
    p50: int
    p95: int
    max: int
    max_seq_length: int
    over_max_seq_length: int
    """Examples over ``max_seq_length``: exact, every example is checked."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "tokenizer": self.tokenizer,
            "tokenizer_sha256": self.tokenizer_sha256,
            "exact": self.exact,
            "sample": self.sample,
            "counted": self.counted,
            "total": self.total,
            "per_example": {"min": self.min, "p50": self.p50, "p95": self.p95, "max": self.max},
            "max_seq_length": self.max_seq_length,
            "over_max_seq_length": self.over_max_seq_length,
        }


OverLength = Callable[[int, int], None]
"""Told ``(line, tokens)`` for each example over the maximum sequence length."""


class TokenTally:
    """Counts tokens as the validator accepts examples, in line order.

    ``add_many`` takes a run of consecutive valid examples: their first line,
    characters, duplicate keys, digests, and a way to get an example's strings
    (called only for the examples that are encoded).
    """

    def __init__(
        self,
        max_seq_length: int,
        over_length: OverLength,
        *,
        exact_bytes: int = EXACT_BYTES,
        expected_bytes: int | None = None,
        tokenizer: Callable[[], Tokenizer] = pinned_tokenizer,
    ) -> None:
        """``expected_bytes``: the file's size if known; a file known to be over
        ``exact_bytes`` is sampled from its first example on (no exact head)."""
        self._limit = max_seq_length
        self._over_length = over_length
        self._exact_bytes = exact_bytes
        self._tokenizer = tokenizer
        # Every example so far encoded (until the file is known to be too large for that).
        self._exact = expected_bytes is None or expected_bytes <= exact_bytes
        self._all_tokens = 0
        self._all_chars = 0
        self._all_counts = array("I")
        self._sample_tokens = 0
        self._sample_chars = 0
        self._sample_counts = array("I")
        self._over = 0
        self._pending: list[Strings] = []
        self._pending_sampled: list[bool] = []
        self._pending_head: list[bool] = []
        self._head = 0  # examples counted into the head (all of them while exact)
        self._pending_chars: list[int] = []

    def add_many(
        self,
        first_line: int,
        bytes_read: int,
        chars: Sequence[int],
        keys: Sequence[bytes],
        values: Sequence[int],
        strings: Callable[[int], Strings],
    ) -> None:
        """Examples ``first_line``, ``first_line + 1``, ... once ``bytes_read`` were read."""
        if self._exact and bytes_read > self._exact_bytes:
            self._flush()
            self._exact = False  # what was counted so far stays, as part of the head
        # token_bound(len(key), key.count(b"\x1f")) > limit, for each key in C-level passes.
        separators = map(bytes.count, keys, repeat(b"\x1f"))
        bounds = map(add, map(len, keys), map(mul, separators, repeat(_PER_SEPARATOR)))
        over = repeat(self._limit - _PER_SEPARATOR - 2)
        long = list(compress(range(len(keys)), map(gt, bounds, over)))
        sampled = list(map(eq, map(rshift, values, repeat(64 - SAMPLE_BITS)), repeat(0)))
        head = len(keys) if self._exact else max(0, HEAD_EXAMPLES - self._head)
        self._head += min(head, len(keys))
        if long:
            tokens = self._encode_now([strings(index) for index in long])
            for index, count_ in zip(long, tokens, strict=True):
                if count_ > self._limit:
                    self._over += 1
                    self._over_length(first_line + index, count_)
                self._add(count_, sampled[index], index < head, chars[index])
        chosen = range(len(keys)) if head >= len(keys) else compress(range(len(keys)), sampled)
        for index in sorted({*chosen, *range(min(head, len(keys)))}.difference(long)):
            self._pending.append(strings(index))
            self._pending_sampled.append(sampled[index])
            self._pending_head.append(index < head)
            self._pending_chars.append(chars[index])
        if len(self._pending) >= _BATCH:
            self._flush()

    def _encode_now(self, examples: list[Strings]) -> list[int]:
        """Each example's tokens, with one call to the tokenizer."""
        lengths = iter(self._tokenizer().lengths([t for texts, _ in examples for t in texts]))
        return [specials + sum(next(lengths) for _ in texts) for texts, specials in examples]

    def _add(self, tokens: int, sampled: bool, head: bool, chars: int) -> None:
        if head:
            self._all_tokens += tokens
            self._all_chars += chars
            self._all_counts.append(tokens)
        if sampled:
            self._sample_tokens += tokens
            self._sample_chars += chars
            self._sample_counts.append(tokens)

    def _flush(self) -> None:
        if not self._pending:
            return
        tokens = self._encode_now(self._pending)
        flags = zip(self._pending_sampled, self._pending_head, self._pending_chars, strict=True)
        for count_, (sampled, head, chars) in zip(tokens, flags, strict=True):
            self._add(count_, sampled, head, chars)
        self._pending.clear()
        self._pending_sampled.clear()
        self._pending_head.clear()
        self._pending_chars.clear()

    def finish(self, examples: int, chars: int) -> TokenStats | None:
        """The figures once every example was added; None without examples."""
        self._flush()
        if examples == 0:
            return None
        if self._exact:
            counts, total, sample = self._all_counts, self._all_tokens, "all"
        else:
            # A ratio estimate: sampled tokens per character times all characters.
            counts, tokens, counted_chars = (
                self._sample_counts,
                self._sample_tokens,
                self._sample_chars,
            )
            sample = f"1/{1 << SAMPLE_BITS} by content hash"
            if not counts:  # few, large examples: none fell in the sample
                counts, tokens, counted_chars = self._all_counts, self._all_tokens, self._all_chars
                sample = f"the first {len(counts):,} examples (none fell in the sample)"
            total = round(tokens / counted_chars * chars) if counted_chars else 0
        ordered = sorted(counts)

        def percentile(fraction: float) -> int:
            return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else 0

        return TokenStats(
            method=METHOD,
            tokenizer=TOKENIZER_NAME,
            tokenizer_sha256=TOKENIZER_SHA256,
            exact=self._exact,
            sample=sample,
            counted=len(ordered),
            total=total,
            min=ordered[0] if ordered else 0,
            p50=percentile(0.5),
            p95=percentile(0.95),
            max=ordered[-1] if ordered else 0,
            max_seq_length=self._limit,
            over_max_seq_length=self._over,
        )
