"""What a server said in an error body, whichever kind of server it is (one reader for every client)."""

from __future__ import annotations

import json

__all__ = ["server_said"]


def server_said(body: str, limit: int = 500) -> str:
    """The server's own explanation in an error ``body``, at most ``limit`` characters.

    Understands a FHIR OperationOutcome (its issues' diagnostics), OpenAI-style ``{"error": {"message"}}``,
    OAuth ``{"error", "error_description"}``, and ``message`` / ``detail`` / ``error`` strings (vLLM and
    most others); otherwise the start of the body, whitespace collapsed.
    """
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    said = None
    if isinstance(data, dict):
        error = data.get("error")
        if data.get("resourceType") == "OperationOutcome":
            issues = [i for i in data.get("issue") or [] if isinstance(i, dict)]
            said = "; ".join(
                str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code")) for i in issues
            )
        elif isinstance(error, dict) and isinstance(error.get("message"), str):
            said = error["message"]
        elif isinstance(error, str) and isinstance(data.get("error_description"), str):
            said = f"{error}: {data['error_description']}"
        else:
            said = next((data[k] for k in ("message", "detail", "error") if isinstance(data.get(k), str)), None)
    return (said if said is not None else " ".join(body.split()))[:limit]
