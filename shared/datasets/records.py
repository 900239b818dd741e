"""One JSONL line: is it one standard JSON object in one of the two formats, and if not, why.

Every problem is a :class:`Problem` with a stable code (``ERROR_CODES`` in
:mod:`shared.datasets.report`) and a precise message for people.
"""

from __future__ import annotations

import json
import json.scanner
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

from shared.datasets.lines import BOM

ROLES: Final = frozenset({"system", "user", "assistant"})
ALT_PAIR: Final = ("text", "ground_truth")


@dataclass(frozen=True)
class Problem:
    """What is wrong with a line: a stable ``code`` and a message."""

    code: str
    message: str


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # pragma: no cover - json produces nothing else


def show(value: str, limit: int = 40) -> str:
    """A short, ASCII-only, quoted rendering of a string found in the data."""
    text = json.dumps(value[:limit])
    return text if len(value) <= limit else text[:-1] + '..."'


class _Rejected(ValueError):
    """A JSON document the json module accepts but a dataset must not contain."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _reject_constant(name: str) -> NoReturn:
    raise _Rejected(
        "invalid_json", f"invalid JSON: {name} is not a JSON value (only finite numbers are)"
    )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that rejects an object with a repeated key.

    Python's json keeps the last of repeated keys while other parsers keep the
    first, so the trainer could see a different example than this check did.
    """
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:  # pragma: no branch - a repeat is there
            if key in seen:
                raise _Rejected(
                    "duplicate_key",
                    f"duplicate key {show(key)} in one object "
                    "(JSON parsers disagree about which value counts)",
                )
            seen.add(key)
    return result


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
# typeshed wants a scanner as the context; any object with the decoder's attributes works.
_scan_json: Final = json.scanner.make_scanner(cast(Any, _DECODER))


def _loads(text: str) -> Any:
    """``json.loads`` with the hooks above, minus two Python-level calls per line.

    The scanner parses one value starting at the first character; a line with
    whitespace around its value, or with an error, goes through the decoder
    itself for the standard behaviour and error messages.
    """
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    if end == len(text):
        return value
    return _DECODER.decode(text)


def _json_problem(error: json.JSONDecodeError, text: str) -> str:
    """A precise message for a JSON syntax error."""
    column = error.colno
    if error.msg == "Extra data":
        before = text[: error.pos]
        hint = ""
        if "\r" in before[len(before.rstrip()) :]:
            hint = "; records separated by bare CR (\\r) line ends? use LF or CRLF"
        return (
            "invalid JSON: unexpected text after the end of the JSON value "
            f"at column {column}{hint}"
        )
    if error.msg == "Invalid control character at":
        char = text[error.pos] if error.pos < len(text) else "?"
        return (
            f"invalid JSON: unescaped control character U+{ord(char):04X} inside a string "
            f"at column {column} (write it as an escape, e.g. \\t or \\n)"
        )
    if error.msg == "Unterminated string starting at":
        return f"invalid JSON: unterminated string starting at column {column}"
    if error.msg == "Expecting value" and error.pos == 0:
        return "invalid JSON: expecting a JSON value at column 1"
    return f"invalid JSON: {error.msg[0].lower()}{error.msg[1:]} at column {column}"


def check_text(record: dict[str, Any], pair: tuple[str, str]) -> Problem | tuple[int, str]:
    """A problem, or (characters, duplicate key) for a valid text record."""
    prompt_name, completion_name = pair
    if prompt_name not in record or completion_name not in record:
        missing = [name for name in pair if name not in record]
        if len(missing) == 2:
            return Problem(
                "missing_field", f"missing fields '{prompt_name}' and '{completion_name}'"
            )
        return Problem("missing_field", f"missing field '{missing[0]}'")
    prompt = record[prompt_name]
    completion = record[completion_name]
    for name, value in ((prompt_name, prompt), (completion_name, completion)):
        if type(value) is not str:
            return Problem(
                "wrong_type", f"field '{name}' must be a string, found {json_type(value)}"
            )
        if not value:
            return Problem("empty_text", f"field '{name}' is an empty string")
        if value.isspace():
            return Problem("empty_text", f"field '{name}' is blank (only whitespace)")
    return len(prompt) + len(completion), f"{prompt}\x1f{completion}"


def check_chat(record: dict[str, Any]) -> Problem | tuple[int, str]:
    """A problem, or (characters, duplicate key) for a valid chat record."""
    messages = record["messages"]
    if type(messages) is not list:
        found = json_type(messages)
        return Problem(
            "wrong_type", f"field 'messages' must be a list of message objects, found {found}"
        )
    if not messages:
        return Problem("empty_messages", "field 'messages' is an empty list")
    chars = 0
    parts: list[str] = []  # role, content, role, content, ...
    for message in messages:
        # The fast path for a good message; _message_problem says what is wrong otherwise.
        if type(message) is dict:
            role = message.get("role")
            content = message.get("content")
            if (
                type(role) is str
                and role in ROLES
                and type(content) is str
                and content
                and not content.isspace()
            ):
                chars += len(content)
                parts.append(role)
                parts.append(content)
                continue
        return _message_problem(len(parts) // 2, message)
    roles = parts[::2]
    if "user" not in roles:
        return Problem(
            "no_user_message",
            "no message with role 'user' (a chat example needs a user and an assistant message)",
        )
    if "assistant" not in roles:
        return Problem(
            "no_assistant_message",
            "no message with role 'assistant' "
            "(a chat example needs a user and an assistant message)",
        )
    if roles[-1] != "assistant":
        return Problem(
            "last_not_assistant",
            f"the last message, messages[{len(roles) - 1}], is from '{roles[-1]}': "
            "it must be the assistant's answer",
        )
    return chars, "\x1f".join(parts)


def _message_problem(index: int, message: object) -> Problem:
    """What is wrong with a chat message that failed the fast check."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        return Problem("wrong_type", f"{where} must be an object, found {json_type(message)}")
    if "role" not in message:
        return Problem("missing_field", f"{where} has no 'role' field")
    role = message["role"]
    if type(role) is not str:
        return Problem("wrong_type", f"{where}.role must be a string, found {json_type(role)}")
    if role not in ROLES:
        return Problem(
            "invalid_role",
            f"{where}.role is {show(role)}, not one of 'system', 'user', 'assistant'",
        )
    if "content" not in message:
        return Problem("missing_field", f"{where} has no 'content' field")
    content = message["content"]
    if type(content) is not str:
        found = json_type(content)
        if found == "array":
            found += " (content parts are not supported: use one string)"
        return Problem("wrong_type", f"{where}.content must be a string, found {found}")
    if not content:
        return Problem("empty_text", f"{where}.content is an empty string")
    return Problem("empty_text", f"{where}.content is blank (only whitespace)")


def surrogate_field(record: dict[str, Any], pair: tuple[str, str] | None) -> Problem:
    """Which string of a valid-looking record holds an unpaired surrogate (None: chat)."""
    if pair is not None:
        candidates = [(f"field '{name}'", record[name]) for name in pair]
    else:
        candidates = [
            (f"messages[{i}].content", m["content"]) for i, m in enumerate(record["messages"])
        ]
    for where, value in candidates:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            code = ord(value[error.start])
            return Problem(
                "lone_surrogate",
                f"{where} contains an unpaired UTF-16 surrogate \\u{code:04x} (not valid Unicode)",
            )
    return Problem(  # pragma: no cover
        "lone_surrogate", "a string contains an unpaired UTF-16 surrogate (not valid Unicode)"
    )


def parse_line(number: int, line: bytes, at_eof: bool) -> tuple[Any, Problem | None]:
    """(the line's JSON value, None), or (None, what stops it from being JSON)."""
    if number == 1 and line[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None, Problem(
            "utf16",
            "the file is UTF-16 encoded (it starts with a UTF-16 byte order mark): use UTF-8",
        )
    if number > 1 and line[:3] == BOM:
        return None, Problem(
            "misplaced_bom",
            "UTF-8 byte order mark (BOM) at the start of the line: "
            "only allowed at the start of the file",
        )
    if b"\x00" in line:
        return None, Problem("nul_byte", f"NUL byte (0x00) at byte {line.index(0) + 1} of the line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, Problem(
            "invalid_utf8",
            f"invalid UTF-8: byte 0x{line[error.start]:02x} at byte {error.start + 1} "
            f"of the line ({error.reason})",
        )
    try:
        return _loads(text), None
    except json.JSONDecodeError as error:
        message = _json_problem(error, text)
        if at_eof and error.msg != "Extra data":
            message += " (the last line has no line end: is the file truncated?)"
        return None, Problem("invalid_json", message)
    except _Rejected as error:
        return None, Problem(error.code, str(error))
    except RecursionError:
        return None, Problem("invalid_json", "invalid JSON: nested too deeply")
    except ValueError as error:  # e.g. an integer with too many digits
        return None, Problem("invalid_json", f"invalid JSON: {error}")
