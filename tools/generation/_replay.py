"""Recording every generation call of a run, and answering a replay from the record.

:class:`RecordingGenerator` stores each result's images in the run's artifact store (by content hash)
and appends the request and the result's metadata to ``generation_calls.jsonl``. :class:`ReplayGenerator`
returns those results — the very images, the recorded timing — for the same requests, so a replay
needs no generation model and no GPU; a request the record does not hold is a ``ReplayMismatchError``.
"""

from __future__ import annotations

import io
import json
import threading
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from okaflow._errors import ReplayMismatchError
from okaflow.tools.generation._protocol import GenerationRequest, GenerationResult, GenerationTool
from okaflow.tools.generation._tasks import TaskRequest, as_request
from okaflow.tools.imaging import MedicalImage
from okaflow.tools.reporting import ArtifactRef, ArtifactStore

__all__ = ["GENERATION_CALLS", "RecordingGenerator", "ReplayGenerator"]

GENERATION_CALLS = "generation_calls.jsonl"


def _key(request: GenerationRequest) -> str:
    return json.dumps(request.model_dump(mode="json"), sort_keys=True)


class RecordingGenerator:
    """``generator``, with every call's result kept in ``artifacts`` and logged to ``path``."""

    def __init__(self, generator: GenerationTool, path: Path, artifacts: ArtifactStore) -> None:
        self.inner = generator
        self.path = path
        self.artifacts = artifacts
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_id(self) -> str | None:
        return self.inner.model_id

    def supports(self, task: str) -> bool:
        return self.inner.supports(task)

    def generate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        request = as_request(request)
        result = self.inner.generate(request, images)
        refs = [self.artifacts.put_image(img).model_dump(mode="json") for img in result.images]
        meta = {k: v for k, v in asdict(result).items() if k != "images"}
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"request": json.loads(_key(request)), "result": meta, "images": refs}) + "\n")
        return result


class ReplayGenerator:
    """Answers generation requests from a run's ``generation_calls.jsonl`` and its artifacts.

    Args:
        run_dir: The recorded run (its record and ``artifacts/``).
        name: model_id: The recorded generator's identity.
        tasks: The tasks the recorded generator supported (a replay offers the model the same ones).
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        name: str,
        model_id: str | None,
        tasks: list[str],
        rebuild: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.model_id = model_id
        # What the recorded generator was, so a replay's record names it as the original's did.
        self.rebuild_spec = rebuild
        self._tasks = set(tasks)
        self._store = ArtifactStore(run_dir)
        self._records: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        record = run_dir / GENERATION_CALLS
        if record.is_file():
            for line in record.read_text(encoding="utf-8").splitlines():
                if line:
                    entry = json.loads(line)
                    self._records[json.dumps(entry["request"], sort_keys=True)].append(entry)
        self._lock = threading.Lock()

    def supports(self, task: str) -> bool:
        return task in self._tasks

    def generate(
        self, request: GenerationRequest | TaskRequest, images: Mapping[str, MedicalImage]
    ) -> GenerationResult:
        """The recorded result for this request (its images read back from the recorded run's artifacts).

        Raises:
            ReplayMismatchError: The record holds no such request.
        """
        request = as_request(request)
        with self._lock:
            queue = self._records.get(_key(request))
            if not queue:
                recorded = sorted({json.loads(k)["task"] for k in self._records})
                raise ReplayMismatchError(
                    f"the replay asked the generator for {request.task!r} on {request.sources} with "
                    f"{request.params}, which the record does not hold (recorded tasks: {recorded or 'none'})",
                    differences=[f"generation request {_key(request)}"],
                )
            entry = queue.popleft()
        pictures = [_decode(self._store.open(ArtifactRef.model_validate(ref))) for ref in entry["images"]]
        return GenerationResult(images=pictures, **entry["result"])


def _decode(png: bytes) -> Image.Image:
    """A stored PNG as an image in its stored mode (re-encoding it gives the same bytes, hence the same hash)."""
    img = Image.open(io.BytesIO(png))
    img.load()
    return img
