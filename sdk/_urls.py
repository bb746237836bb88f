"""URLs fit for records, logs and errors: no credentials, and (for errors) no query naming a patient."""

from __future__ import annotations

from typing import overload
from urllib.parse import urlsplit, urlunsplit

__all__ = ["without_credentials", "without_query"]


@overload
def without_credentials(url: str) -> str: ...
@overload
def without_credentials(url: None) -> None: ...
def without_credentials(url: str | None) -> str | None:
    """``url`` without user, password or query: API keys and passwords never reach a run's record."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):  # dicom://AET@host:port names an AE title, not a user
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    # The query goes too: API keys travel there as often as in the user part (``?key=…``).
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def without_query(url: str) -> str:
    """``url`` without its query or credentials: searches carry patient identifiers, and errors end up in
    logs (the audit trail keeps the whole request)."""
    return without_credentials(url).split("?", 1)[0]
