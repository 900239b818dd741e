"""The host's keys: a master key, function keys and per-extension system keys.

They live in ``<state dir>/host_keys.json``, created with random keys on first start
and kept across restarts (the real host keeps its keys in storage or on disk, the
same way). The settings ``FUNCTIONS_HOST_MASTER_KEY``, ``FUNCTIONS_HOST_FUNCTION_KEY``
and ``FUNCTIONS_HOST_SYSTEM_KEY_<NAME>`` (e.g. ``..._EVENTGRID_EXTENSION``) replace
the stored ones, for a URL that must stay the same across machines.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KEYS_FILE = "host_keys.json"
MASTER_KEY_SETTING = "FUNCTIONS_HOST_MASTER_KEY"
FUNCTION_KEY_SETTING = "FUNCTIONS_HOST_FUNCTION_KEY"
SYSTEM_KEY_SETTING_PREFIX = "FUNCTIONS_HOST_SYSTEM_KEY_"
DEFAULT_FUNCTION_KEY = "default"
# The extensions whose webhooks this host serves, each with its own system key.
SYSTEM_KEY_NAMES = ("eventgrid_extension", "blobs_extension")


@dataclass(frozen=True)
class HostKeys:
    master_key: str
    function_keys: dict[str, str] = field(default_factory=dict)
    system_keys: dict[str, str] = field(default_factory=dict)

    @property
    def function_key(self) -> str:
        return self.function_keys[DEFAULT_FUNCTION_KEY]

    def system_key(self, name: str) -> str:
        try:
            return self.system_keys[name]
        except KeyError:
            known = ", ".join(sorted(self.system_keys)) or "none"
            raise KeyError(f"no system key {name!r} (known: {known})") from None

    def is_master(self, candidate: str | None) -> bool:
        return _matches(candidate, [self.master_key])

    def allows_function(self, candidate: str | None) -> bool:
        """A function-level route: any function key, or the master key."""
        return _matches(candidate, [self.master_key, *self.function_keys.values()])

    def allows_system(self, name: str, candidate: str | None) -> bool:
        """An extension webhook: that extension's system key, or the master key."""
        keys = [self.master_key]
        if name in self.system_keys:
            keys.append(self.system_keys[name])
        return _matches(candidate, keys)


def _matches(candidate: str | None, keys: list[str]) -> bool:
    if not candidate:
        return False
    # Compare against every key, always, so timing does not tell which one is close.
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate.encode(), key.encode())
    return found


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def load_or_create(state_dir: Path) -> HostKeys:
    """Read ``host_keys.json`` from ``state_dir``, creating or completing it as needed."""
    path = state_dir / KEYS_FILE
    stored: dict[str, object] = {}
    with contextlib.suppress(FileNotFoundError):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            stored = loaded
    master = stored.get("masterKey")
    functions = stored.get("functionKeys")
    systems = stored.get("systemKeys")
    keys = HostKeys(
        master_key=master if isinstance(master, str) and master else _new_key(),
        function_keys=_string_map(functions),
        system_keys=_string_map(systems),
    )
    changed = keys.master_key != master
    if DEFAULT_FUNCTION_KEY not in keys.function_keys:
        keys.function_keys[DEFAULT_FUNCTION_KEY] = _new_key()
        changed = True
    for name in SYSTEM_KEY_NAMES:
        if name not in keys.system_keys:
            keys.system_keys[name] = _new_key()
            changed = True
    if changed:
        state_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "masterKey": keys.master_key,
            "functionKeys": keys.function_keys,
            "systemKeys": keys.system_keys,
        }
        temporary = path.with_suffix(".tmp")
        with open(
            os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
        ) as out:
            json.dump(document, out, indent=2)
        temporary.replace(path)
    return keys


def read(state_dir: Path) -> HostKeys | None:
    """The stored keys, or None when the host never started with this state dir."""
    path = state_dir / KEYS_FILE
    if not path.exists():
        return None
    return load_or_create(state_dir)


def with_overrides(keys: HostKeys, settings: Mapping[str, str]) -> HostKeys:
    """``keys`` with the keys given in app settings taking precedence."""
    function_keys = dict(keys.function_keys)
    if settings.get(FUNCTION_KEY_SETTING):
        function_keys[DEFAULT_FUNCTION_KEY] = settings[FUNCTION_KEY_SETTING]
    system_keys = dict(keys.system_keys)
    for name in list(system_keys):
        override = settings.get(SYSTEM_KEY_SETTING_PREFIX + name.upper())
        if override:
            system_keys[name] = override
    return HostKeys(
        master_key=settings.get(MASTER_KEY_SETTING) or keys.master_key,
        function_keys=function_keys,
        system_keys=system_keys,
    )


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str) and v}
