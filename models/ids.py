"""Public identifiers: a prefix naming the kind, then a sortable, random-tailed id.

``job_01JD3Q8X6R9V2M4K7T0B5N8C1W``: 48 bits of milliseconds since the epoch and 80
random bits in Crockford base32 (the ULID layout), so ids sort by creation time,
cursors are plain ids, and nothing about a tenant's volume can be read from them.
"""

from __future__ import annotations

import re
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BODY_LENGTH = 26
#: the longest id any prefix produces (``prefix_`` + 26)
MAX_ID_LENGTH = 40


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    """A new id such as ``job_01JD3Q8X6R9V2M4K7T0B5N8C1W``."""
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (millis & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(_BODY_LENGTH):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def id_pattern(prefix: str) -> re.Pattern[str]:
    """A pattern matching the ids :func:`new_id` makes for ``prefix``."""
    return re.compile(rf"^{re.escape(prefix)}_[0-9A-HJKMNP-TV-Z]{{{_BODY_LENGTH}}}$")
