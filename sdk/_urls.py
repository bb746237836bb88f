"""URLs fit for records, logs and errors: no credentials, and (for errors) no query naming a patient."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["without_credentials", "without_query"]


def without_credentials(url: str | None) -> str | None:
    """``url`` with user and password removed: API keys and passwords never reach a run's record."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def without_query(url: str) -> str:
    """``url`` without its query: searches carry patient identifiers, and errors end up in logs (the audit
    trail keeps the whole request)."""
    return url.split("?", 1)[0]
