"""Recording every model call of a run, and answering a later run from that record (no server needed).

:class:`RecordingBackend` wraps any backend and appends each call — the request as sent (image bytes
as content hashes) and the whole result with its provenance — to ``model_calls.jsonl`` in the run
directory, one JSON line per call, written before the agent moves on. :class:`ReplayBackend` answers
the same requests from such a file, matching on the prompt hash; a request the record does not hold
is a :class:`~okaflow.ReplayMismatchError` that names what differs from the closest recorded call.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from okaflow._errors import ReplayMismatchError, RunDirectoryError
from okaflow._types import content_hash
from okaflow.model_backend._protocol import UnderstandingBackend, UnderstandRequest, UnderstandResult, prompt_hash

__all__ = ["MODEL_CALLS", "RecordingBackend", "ReplayBackend", "request_record"]

MODEL_CALLS = "model_calls.jsonl"


def request_record(request: UnderstandRequest) -> dict[str, Any]:
    """What a request asked, in JSON: messages, image hashes, schema, sampling; evidence by id only."""
    return {
        "purpose": request.purpose,
        "messages": [m.model_dump() for m in request.messages],
        "images": [{"evidence_id": i.evidence_id, "sha256": content_hash(i.png)} for i in request.images],
        "response_schema": request.response_schema,
        "seed": request.seed,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "evidence_ids": [e.id for e in request.evidence],
    }


class RecordingBackend:
    """``backend``, with every call appended to ``path`` (JSON Lines) as it completes.

    ``reuse`` holds recorded calls to answer from instead of calling ``backend`` (a resumed run's calls
    that were made, and recorded, before it stopped mid-step): each is used once and not recorded again.
    """

    def __init__(self, backend: UnderstandingBackend, path: Path, *, reuse: list[dict[str, Any]] | None = None) -> None:
        self.inner = backend
        self.path = path
        self._lock = threading.Lock()
        self._seq = 0
        self._reuse: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for record in reuse or []:
            self._reuse[record["prompt_hash"]].append(record)
        self.reused = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_id(self) -> str | None:
        return self.inner.model_id

    @property
    def is_model(self) -> bool:
        return self.inner.is_model

    @property
    def max_images_per_request(self) -> int | None:
        return getattr(self.inner, "max_images_per_request", None)

    @property
    def base_url(self) -> str | None:
        return getattr(self.inner, "base_url", None)

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        recorded = self._recorded(request)
        if recorded is not None:
            return recorded
        result = self.inner.understand(request)
        self._append(request, result)
        return result

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        recorded = self._recorded(request)
        if recorded is not None:
            return recorded
        result = await self.inner.aunderstand(request)
        self._append(request, result)
        return result

    def _recorded(self, request: UnderstandRequest) -> UnderstandResult | None:
        if not self._reuse:
            return None
        with self._lock:
            queue = self._reuse.get(prompt_hash(request))
            if not queue:
                return None
            record = queue.popleft()
            self.reused += 1
        return UnderstandResult.model_validate(record["result"])

    def _append(self, request: UnderstandRequest, result: UnderstandResult) -> None:
        with self._lock:
            self._seq += 1
            line = {
                "seq": self._seq,
                "prompt_hash": prompt_hash(request),
                "request": request_record(request),
                "result": result.model_dump(mode="json"),
            }
            with self.path.open("a", encoding="utf-8") as fh:
                # Key order kept as produced: a replayed result must serialise exactly as the original did.
                fh.write(json.dumps(line) + "\n")


class ReplayBackend:
    """Answers from a run's recorded model calls, in the recorded backend's name.

    Args:
        path: A ``model_calls.jsonl`` (or the run directory holding one).
        name: model_id: is_model: The recorded backend's identity (from the run's manifest), so a
            replayed report names the backend the original did.
        max_images_per_request: The recorded backend's limit, so the agent batches images as it did.

    Raises:
        RunDirectoryError: No record at ``path``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "replay",
        model_id: str | None = None,
        is_model: bool = True,
        max_images_per_request: int | None = None,
    ) -> None:
        source = Path(path)
        if source.is_dir():
            source = source / MODEL_CALLS
        if not source.is_file():
            raise RunDirectoryError(f"no recorded model calls at {source}", hint="replay a run okaflow 0.1+ recorded")
        self.path = source
        self.name = name
        self.model_id = model_id
        self.is_model = is_model
        self.max_images_per_request = max_images_per_request
        self._records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line]
        self._by_hash: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for record in self._records:
            self._by_hash[record["prompt_hash"]].append(record)
        self._lock = threading.Lock()
        self.served = 0

    @property
    def remaining(self) -> int:
        """Recorded calls not yet asked for."""
        return sum(len(q) for q in self._by_hash.values())

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        """The recorded result for this exact request (by prompt hash), in recorded order for repeats.

        Raises:
            ReplayMismatchError: The record holds no such request; the message says how it differs from
                the closest recorded one.
        """
        key = prompt_hash(request)
        with self._lock:
            queue = self._by_hash.get(key)
            if not queue:
                raise self._mismatch(request)
            record = queue.popleft()
            self.served += 1
        return UnderstandResult.model_validate(record["result"])

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        return await asyncio.to_thread(self.understand, request)

    def _mismatch(self, request: UnderstandRequest) -> ReplayMismatchError:
        asked = request_record(request)
        candidates = [r for r in self._records if r["request"]["purpose"] == asked["purpose"]] or self._records
        if not candidates:
            return ReplayMismatchError(f"{self.path} holds no model calls, but the replay asked for one")
        closest = min(candidates, key=lambda r: len(_differences(r["request"], asked)))
        diffs = _differences(closest["request"], asked)
        detail = "; ".join(diffs) if diffs else "the same request was already answered as often as recorded"
        return ReplayMismatchError(
            f"the replay asked the model for something the record does not hold (closest: call #{closest['seq']}): "
            + detail,
            differences=diffs,
        )


def _differences(recorded: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """Human-readable differences between a recorded and an asked request, most telling first."""
    out: list[str] = []
    rec_msgs, new_msgs = recorded.get("messages", []), asked.get("messages", [])
    if len(rec_msgs) != len(new_msgs):
        out.append(f"{len(new_msgs)} messages instead of {len(rec_msgs)}")
    for i, (a, b) in enumerate(zip(rec_msgs, new_msgs, strict=False)):
        if a != b:
            where = _first_difference(a.get("content", ""), b.get("content", ""))
            out.append(f"message {i} ({b.get('role')}) differs: {where}")
            break
    rec_imgs = [i["sha256"][:12] for i in recorded.get("images", [])]
    new_imgs = [i["sha256"][:12] for i in asked.get("images", [])]
    if rec_imgs != new_imgs:
        out.append(f"images {new_imgs} instead of {rec_imgs}")
    if recorded.get("response_schema") != asked.get("response_schema"):
        out.append("a different response schema")
    for key in ("seed", "temperature", "max_tokens"):
        if recorded.get(key) != asked.get(key):
            out.append(f"{key} {asked.get(key)!r} instead of {recorded.get(key)!r}")
    return out


def _first_difference(old: str, new: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
    start = max(0, at - 30)
    return f"recorded …{old[start : at + 40]!r}… now …{new[start : at + 40]!r}…"
