"""Reading a model's answer text, the same way for every backend: ``<think>`` split off, JSON checked."""

from __future__ import annotations

import json
import re
from typing import Any

from okaflow._errors import BackendOutputError
from okaflow.model_backend._protocol import UnderstandRequest

__all__ = ["parse_json_answer", "split_reasoning"]

# A leading <think>…</think> block; some chat templates open the tag in the prompt, so the reply
# may start inside it and carry only the closing tag.
_THINK = re.compile(r"^\s*(?:<think>)?(?P<reasoning>.*?)</think>\s*", re.DOTALL)


def split_reasoning(text: str) -> tuple[str, str | None]:
    """``(answer, reasoning)``: a leading ``<think>…</think>`` block moved out of the answer."""
    think = _THINK.match(text)
    if think is None:
        return text, None
    return text[think.end() :], think.group("reasoning").strip() or None


def parse_json_answer(text: str, request: UnderstandRequest, *, truncated: bool, backend: str) -> dict[str, Any] | None:
    """The answer as a JSON object when the request asked for a schema (``None`` when it did not).

    Raises:
        BackendOutputError: Cut at ``max_tokens`` (``truncated``), not JSON, or not a JSON object; ``raw``
            holds the text. Schema validation is the caller's (:meth:`UnderstandResult.as_model`).
    """
    if request.response_schema is None:
        return None
    if truncated:
        raise BackendOutputError(
            f"the answer was cut at max_tokens={request.max_tokens} before the JSON was complete",
            backend=backend,
            raw=text,
            hint="raise max_tokens on the request (or shorten the prompt)",
        )
    try:
        # strict=False: guided decoding may emit raw control characters (a newline) inside strings.
        loaded = json.loads(text, strict=False)
    except ValueError as exc:
        raise BackendOutputError(
            f"the answer is not valid JSON ({exc})",
            backend=backend,
            raw=text,
            hint="use structured output (guided decoding) so the model can only write the schema",
        ) from None
    if not isinstance(loaded, dict):
        raise BackendOutputError(
            f"the answer is JSON but not an object (got {type(loaded).__name__})",
            backend=backend,
            raw=text,
            hint="use structured output (guided decoding) so the model can only write the schema",
        )
    return loaded
