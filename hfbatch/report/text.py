"""Safe text and number formatting for the report: every string from data goes through `esc`."""

from __future__ import annotations

import datetime
import html
import math
import re
import time
from typing import Any

__all__ = [
    "esc",
    "fmt_cost",
    "fmt_duration",
    "fmt_int",
    "fmt_ms",
    "fmt_num",
    "fmt_time",
    "is_secret_key",
    "mask",
    "num",
    "short",
    "unix_time",
]

# What a Hugging Face token looks like; anything shaped like one is masked wherever it appears.
_TOKEN = re.compile(r"hf_\w{8,}")
_MASKED = "hf_***"
_SECRET_WORDS = ("token", "secret", "password", "authorization", "api_key", "apikey", "credential")
_SECRET_EXACT = frozenset({"key", "auth", "bearer"})
#: A value from data is cut to this many characters before it is shown.
MAX_TEXT = 300


def mask(value: object) -> str:
    """`value` as text with anything shaped like an HF token replaced by `hf_***`."""
    return _TOKEN.sub(_MASKED, value if isinstance(value, str) else str(value))


def esc(value: object, limit: int = MAX_TEXT) -> str:
    """`value` masked, cut to `limit` characters and HTML-escaped (safe in text and in quoted attributes)."""
    return html.escape(short(mask(value), limit), quote=True)


def short(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def is_secret_key(key: str) -> bool:
    """Whether a setting named `key` holds a secret whose value must never be shown."""
    k = key.lower()
    # Names of where a secret lives (api_key_env = "HF_TOKEN") are not secrets.
    if k.endswith(("_env", "_path", "_file")):
        return False
    return k in _SECRET_EXACT or (any(word in k for word in _SECRET_WORDS) and not k.endswith("tokens"))


def num(value: Any) -> float | None:
    """`value` as a finite float, or None when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def unix_time(value: Any) -> float | None:
    """A Unix time given as a number or an ISO 8601 string (naive means UTC), or None."""
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.timestamp()
    return num(value)


def fmt_int(value: Any) -> str:
    """A count with thousands separators, or "unknown"."""
    v = num(value)
    return "unknown" if v is None else f"{round(v):,}"


def fmt_num(value: float, digits: int = 3) -> str:
    """A short human number: 0.25, 12.5, 1,234."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_cost(value: Any) -> str:
    """Dollars with enough decimals to be useful, or "unknown" (None means the price was not known)."""
    v = num(value)
    if v is None:
        return "unknown"
    if v == 0:
        return "$0.00"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    return f"${v:.2g}" if abs(v) < 0.001 else f"${v:.4f}"


def fmt_duration(seconds: Any) -> str:
    """A duration: 850 ms, 12.4 s, 3 min 05 s, 2 h 07 min, or "unknown"."""
    s = num(seconds)
    if s is None or s < 0:
        return "unknown"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    if s < 86400 * 2:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    return f"{s / 86400:.1f} days"


def fmt_ms(seconds: Any) -> str:
    """A latency given in seconds, shown in milliseconds, or "-"."""
    s = num(seconds)
    if s is None:
        return "-"
    return f"{s * 1000:.1f}" if s < 0.01 else f"{s * 1000:,.0f}"


def fmt_time(unix: Any) -> str:
    """A Unix time (or ISO 8601 string) as UTC date and time, or "unknown"."""
    v = unix_time(unix)
    if v is None or not 0 <= v < 1e11:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))
