"""The fast path: a whole block of lines found valid at once, or not decided at all.

Checking line by line costs a stdlib JSON parse with a Python hook per object
and several Python calls per line. Most blocks of a real dataset are nothing
but valid examples of the file's known format; for those, a
:class:`BlockChecker` decides the whole block with one msgspec decode and a
few C-level passes (``map``, ``all``, ``str.join``) over what it decoded.

It answers only when it is sure. Either every line of the block is a valid
example, exactly as the line-by-line path (:mod:`~shared.datasets.records`)
would find it, and it returns each example's characters and duplicate key in
line order; or it returns None, having changed nothing, and the caller checks
those lines one by one. Why the two cannot differ, one point per way they could:

- **Standard JSON.** msgspec rejects what the stdlib path rejects for these
  types: invalid UTF-8, unescaped control characters (so NUL bytes), lone
  surrogate escapes, ``NaN``, a BOM. The records are Structs that forbid
  unknown fields and require each of theirs, so an object holds exactly its
  fields (``messages`` must not be empty). Whitespace around a line's value is
  JSON whitespace to both paths.
- **One value per line.** Each line is wrapped in an array of exactly one
  record, ``[line 1]\\n[line 2]...``, and the whole decoded as JSON lines.
  Each ``]\\n[`` put in for a newline can only close a line's array (inside a
  record, the ``[`` after it would have to be a key), so as many arrays as
  lines means each line is one record and nothing more: a blank line, two
  values on a line or a value running over two lines all fail.
- **Lines within the limit**, measured between newlines after CRLF became LF,
  as the line splitter measures them.
- **No repeated key.** msgspec keeps the last of a repeated key without a word.
  But every text value (prompt, completion; a message's role and content) is
  a custom type that msgspec hands to a hook, once per occurrence, the
  overwritten ones included; the hook checks it is a string and collects it.
  Every field is required, so exactly one string per field per record means no
  field was repeated; a repeated ``messages`` brings more messages, each with
  its two hooked fields (an empty list is refused).
- **Same checks, same key.** Non-empty, not only whitespace (``str.isspace``),
  roles, a user message, the assistant last; the duplicate key is the same
  ``\\x1f``-joined string :mod:`~shared.datasets.records` builds.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate, chain, repeat
from operator import attrgetter, contains, itemgetter, sub
from typing import Annotated, Any, Final

from shared.datasets.records import ROLES
from shared.datasets.tokens import Strings, chat_strings, text_strings

_FIRST: Final = itemgetter(0)
_MESSAGES: Final = attrgetter("messages")
_KEY_JOIN: Final = "\x1f".join

Examples = tuple[list[int], list[bytes], Callable[[int], Strings]]
"""Each valid example's characters and its duplicate key (UTF-8), in line order, and
what the i-th example encodes to tokens (:mod:`~shared.datasets.tokens`)."""


class _First:
    """Stands for a collected string: the prompt, or a message's role."""


class _Second:
    """Stands for a collected string: the completion, or a message's content."""


_FIRST_HELD: Final = _First()
_SECOND_HELD: Final = _Second()


class BlockChecker:
    """Decides blocks of complete lines for one known format (chat, or a text field pair).

    Build it once the file's format is known. Not thread-safe: ``examples``
    collects into lists the decoder's hook appends to.
    """

    __slots__ = ("_decode_lines", "_error", "_examples", "_firsts", "_max_line", "_seconds")

    def __init__(self, pair: tuple[str, str] | None, max_line_bytes: int) -> None:
        """``pair``: the text field pair (prompt, completion), or None for chat."""
        import msgspec  # here, not at import: only validation needs it

        options: dict[str, Any] = {"forbid_unknown_fields": True, "gc": False}
        record: type[msgspec.Struct]
        if pair is None:
            message = msgspec.defstruct(
                "Message", [("role", _First), ("content", _Second)], **options
            )
            messages = Annotated[list[message], msgspec.Meta(min_length=1)]  # type: ignore[valid-type]
            record = msgspec.defstruct("ChatRecord", [("messages", messages)], **options)
            self._examples: Callable[[list[Any], list[str], list[str]], Examples | None]
            self._examples = _chat_examples
        else:
            record = msgspec.defstruct(
                "TextRecord",
                [("prompt", _First), ("completion", _Second)],
                rename={"prompt": pair[0], "completion": pair[1]},
                **options,
            )
            self._examples = _text_examples
        self._firsts: list[str] = []
        self._seconds: list[str] = []
        hook = _collector(self._firsts.append, self._seconds.append)
        decoder: msgspec.json.Decoder[tuple[Any]]
        decoder = msgspec.json.Decoder(tuple[record], dec_hook=hook)  # type: ignore[valid-type]
        self._decode_lines = decoder.decode_lines
        self._error = msgspec.DecodeError
        self._max_line = max_line_bytes

    def examples(self, block: bytes) -> Examples | None:
        """Every line of ``block`` as a valid example, or None.

        ``block`` is LF, then lines each ending with LF (``take_block``'s form).
        A line's CR is part of it here: the caller turns CRLF into LF first.
        """
        if not self._within_limit(block):
            return None
        # LF L1 LF L2 LF -> ]LF[L1]LF[L2]LF[ -> [L1]LF[L2]: one array per line.
        separated = block.replace(b"\n", b"]\n[")
        lines = (len(separated) - len(block)) // 2 - 1
        firsts, seconds = self._firsts, self._seconds
        try:
            records = self._decode_lines(memoryview(separated)[2:-2])
            if len(records) != lines:
                return None
            return self._examples(records, firsts, seconds)
        except (self._error, RecursionError):  # a value nested deeper than msgspec goes
            return None
        finally:
            firsts.clear()
            seconds.clear()

    def _within_limit(self, block: bytes) -> bool:
        """No line of the block is longer than the limit."""
        # From each line start, the last LF within the limit ends a run of short enough lines.
        window = self._max_line + 1
        start, end = 1, len(block)
        while end - start > window:
            newline = block.rfind(b"\n", start, start + window)
            if newline < 0:
                return False
            start = newline + 1
        return True


def _collector(
    first: Callable[[str], None], second: Callable[[str], None]
) -> Callable[[type, Any], object]:
    """The decoder's hook: every occurrence of a hooked field's value, checked and collected."""

    def collect(kind: type, value: Any) -> object:
        if value.__class__ is not str:
            raise ValueError("not a string")  # msgspec turns it into a ValidationError
        if kind is _First:
            first(value)
            return _FIRST_HELD
        second(value)
        return _SECOND_HELD

    return collect


def _usable(texts: list[str]) -> bool:
    """Every text is non-empty and not only whitespace, as records.check_* require."""
    return all(texts) and not any(map(str.isspace, texts))


def _utf8(keys: list[str]) -> list[bytes] | None:
    try:
        return list(map(str.encode, keys))
    except UnicodeEncodeError:  # pragma: no cover - msgspec rejects lone surrogates
        return None


def _text_examples(
    records: list[Any], prompts: list[str], completions: list[str]
) -> Examples | None:
    if len(prompts) != len(records) or len(completions) != len(records):
        return None  # a repeated field
    if not _usable(prompts) or not _usable(completions):
        return None
    keys = list(map(_KEY_JOIN, zip(prompts, completions, strict=True)))  # as records.check_text
    encoded = _utf8(keys)
    if encoded is None:  # pragma: no cover
        return None
    prompts, completions = prompts[:], completions[:]  # the caller clears its own

    def strings(index: int) -> Strings:
        return text_strings(prompts[index], completions[index])

    return list(map(sub, map(len, keys), repeat(1))), encoded, strings


def _chat_examples(records: list[Any], roles: list[str], contents: list[str]) -> Examples | None:
    sizes = list(map(len, map(_MESSAGES, map(_FIRST, records))))
    ends = list(accumulate(sizes))
    if len(roles) != ends[-1] or len(contents) != ends[-1]:
        return None  # a repeated field
    if not ROLES.issuperset(roles) or not _usable(contents):
        return None
    if list(map(roles.__getitem__, map(sub, ends, repeat(1)))).count("assistant") != len(ends):
        return None  # some conversation does not end with the assistant
    conversations = list(map(slice, chain((0,), ends), ends))
    if not all(map(contains, map(roles.__getitem__, conversations), repeat("user"))):
        return None
    # role \x1f content \x1f role ..., as records.check_chat
    interleaved = list(chain.from_iterable(zip(roles, contents, strict=True)))
    pairs = map(slice, chain((0,), map((2).__mul__, ends)), map((2).__mul__, ends))
    keys = list(map(_KEY_JOIN, map(interleaved.__getitem__, pairs)))
    encoded = _utf8(keys)
    if encoded is None:  # pragma: no cover
        return None
    lengths = list(map(len, contents))
    roles, contents = roles[:], contents[:]  # the caller clears its own

    def strings(index: int) -> Strings:
        part = conversations[index]
        return chat_strings(roles[part], contents[part])

    return list(map(sum, map(lengths.__getitem__, conversations))), encoded, strings
