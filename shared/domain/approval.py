"""Who approved a run over budget: named without ever keeping the key itself.

Pure. The Functions host knows which function key a request presented (its
claim ``.../functions/claims/keyid``) but the Python worker is never told: its
``HttpRequest`` carries method, URL, headers, body and parameters only. So the
approver is identified by a fingerprint of the key it presented (the first 12
hex digits of the key's SHA-256: enough to tell keys apart, useless to call the
API with), named through the setting ``APPROVER_KEYS`` (fingerprint -> name);
failing that, by App Service authentication's ``x-ms-client-principal-name``
header; failing that, "unknown". A name the caller gives (``{"by": ...}``) is
recorded as ``claimed_by``: what they said, not what the key proves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FINGERPRINT_DIGITS = 12
UNKNOWN = "unknown"


def key_fingerprint(key: str) -> str:
    """The first 12 hex digits of ``key``'s SHA-256 ("" for no key)."""
    if not key:
        return ""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:FINGERPRINT_DIGITS]


@dataclass(frozen=True)
class Approver:
    by: str  # the name the key (or the platform's authentication) stands for
    key: str = ""  # the presented key's fingerprint, never the key
    claimed_by: str = ""  # the name the request body gave, if any

    @classmethod
    def identify(
        cls,
        presented_key: str,
        principal: str,
        approver_keys: Mapping[str, str],
        claimed_by: str = "",
    ) -> Approver:
        """The approver of a request that presented ``presented_key`` (header or
        ``code``), with App Service's ``principal`` name if any."""
        fingerprint = key_fingerprint(presented_key)
        by = approver_keys.get(fingerprint) if fingerprint else None
        return cls(by or principal.strip() or UNKNOWN, fingerprint, claimed_by)

    def record(self, at: dt.datetime) -> dict[str, Any]:
        """The audit record stored on the run as ``approval``."""
        record = {"by": self.by, "at": at.isoformat(), "key": self.key}
        if self.claimed_by:
            record["claimed_by"] = self.claimed_by
        return record
