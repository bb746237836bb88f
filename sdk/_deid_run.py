"""A run's record rebuilt over its de-identified case, for a shareable bundle that replays elsewhere.

Rewriting a record in place (prompts, checkpoints, event log, report) would leave a trail of
half-replaced values. Instead the agent runs again, over the de-identified case, with the original
run's settings, start time (shifted like every date) and answers: each recorded model answer and
generation result, with every replaced name, identifier, id and date scrubbed from it, is handed back
for the matching request. So the new record is a genuine okaflow record of the de-identified case —
its prompts, checkpoints and report are what okaflow itself produced from those inputs — and its own
replay is byte-identical. The manifest says the answers were carried over: the model never saw the
de-identified prompts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from okaflow._errors import DeidentificationError, ReplayMismatchError
from okaflow.model_backend import UnderstandRequest, UnderstandResult, prompt_hash
from okaflow.tools.deid import Pseudonymizer

__all__ = ["rerecord_deidentified"]


def rerecord_deidentified(
    original: Path, manifest: dict[str, Any], case_dir: Path, out: Path, pseudonyms: Pseudonymizer, *, strict: bool
) -> Path:
    """Run the agent over the de-identified ``case_dir`` into ``out`` with ``original``'s answers, scrubbed.

    Raises:
        DeidentificationError: The run used custom tools or knowledge (not recorded, so not re-runnable),
            or the re-run asked for a call the original did not make.
    """
    from okaflow._case import Case
    from okaflow._record import backend_for, read_calls, recorded_options
    from okaflow._run import run
    from okaflow.tools.generation import ReplayGenerator

    custom = [k for k in ("tools", "knowledge") if k in manifest["settings"]]
    if custom:
        raise DeidentificationError(
            f"run {original} used custom {' and '.join(custom)}, which the record cannot rebuild",
            hint="export it without de-identification, or re-run it with built-in tools first",
        )
    loaded = Case.load(case_dir, strict=strict)
    task = manifest["case"].get("task")
    loaded.task = pseudonyms.scrub_text(task) if task else task
    recorded = manifest["backend"]
    backend: Any
    if recorded["is_model"]:
        backend = CarriedOverBackend(
            [_scrubbed(call, pseudonyms) for call in read_calls(original)],
            name=recorded["name"],
            model_id=recorded["model_id"],
            max_images_per_request=recorded.get("max_images_per_request"),
        )
    else:
        backend = backend_for(manifest, None)
    generator = None
    gen = manifest["settings"].get("generator")
    if gen is not None:
        generator = ReplayGenerator(_scrubbed_generation_record(original, out.parent / "generation", pseudonyms), **gen)
    result = run(
        loaded,
        workflow=manifest["workflow"],
        backend=backend,
        out=out,
        task=loaded.task,
        generator=generator,
        _started_at=pseudonyms.shift_fhir_date(manifest["created"]),
        **recorded_options(manifest),
    )
    if isinstance(backend, CarriedOverBackend) and backend.remaining:
        raise DeidentificationError(
            f"the run over the de-identified case asked for {backend.served} model calls; the original made "
            f"{backend.served + backend.remaining}",
            hint="the de-identified case changed what the agent asks (e.g. a knowledge document lost its text)",
        )
    return result.run_dir


def _scrubbed(value: Any, pseudonyms: Pseudonymizer) -> Any:
    """``value`` (recorded JSON) with every string scrubbed."""
    if isinstance(value, str):
        return pseudonyms.scrub_text(value)
    if isinstance(value, list):
        return [_scrubbed(v, pseudonyms) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v, pseudonyms) for k, v in value.items()}
    return value


def _scrubbed_generation_record(original: Path, into: Path, pseudonyms: Pseudonymizer) -> Path:
    """A copy of the run's generation record with its requests and results scrubbed, and its images."""
    from okaflow.tools.generation import GENERATION_CALLS

    into.mkdir(parents=True, exist_ok=True)
    record = original / GENERATION_CALLS
    lines = record.read_text(encoding="utf-8").splitlines() if record.is_file() else []
    scrubbed = [json.dumps(_scrubbed(json.loads(line), pseudonyms)) for line in lines if line]
    (into / GENERATION_CALLS).write_text("".join(f"{line}\n" for line in scrubbed), encoding="utf-8")
    # Generated pixels derive from (de-identified-alike) pixels and carry only the synthetic label.
    if (original / "artifacts").is_dir():
        shutil.copytree(original / "artifacts", into / "artifacts", dirs_exist_ok=True)
    return into


class CarriedOverBackend:
    """Answers each request with the original run's answer to the same step and images (scrubbed).

    Matching is by purpose and by the image evidence ids sent (after pseudonymisation), in recorded
    order — not by prompt hash, since the de-identified prompt is a different text. Each answer's
    provenance gets the new prompt's hash, so the record stays consistent with itself.
    """

    def __init__(
        self, calls: list[dict[str, Any]], *, name: str, model_id: str | None, max_images_per_request: int | None
    ) -> None:
        self.name = name
        self.model_id = model_id
        self.is_model = True
        self.max_images_per_request = max_images_per_request
        self._queues: dict[tuple[str, tuple[str, ...]], deque[dict[str, Any]]] = defaultdict(deque)
        for call in sorted(calls, key=lambda c: c["seq"]):
            self._queues[self._key(call["request"]["purpose"], call["request"]["images"])].append(call["result"])
        self._lock = threading.Lock()
        self.served = 0

    @staticmethod
    def _key(purpose: str, images: list[Any]) -> tuple[str, tuple[str, ...]]:
        ids = [i["evidence_id"] if isinstance(i, dict) else i.evidence_id for i in images]
        return purpose, tuple(ids)

    @property
    def remaining(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        with self._lock:
            queue = self._queues.get(self._key(request.purpose, list(request.images)))
            if not queue:
                raise ReplayMismatchError(
                    f"the run over the de-identified case asked for a {request.purpose!r} call on images "
                    f"{[i.evidence_id for i in request.images]} that the original run did not make",
                    differences=[f"purpose {request.purpose!r}, images {[i.evidence_id for i in request.images]}"],
                )
            answer = queue.popleft()
            self.served += 1
        provenance = {**answer["provenance"], "prompt_hash": prompt_hash(request)}
        return UnderstandResult.model_validate({**answer, "provenance": provenance})

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        return await asyncio.to_thread(self.understand, request)
