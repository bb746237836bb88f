"""Generation through an OpenAI-style image endpoint: how vllm-omni serves BAGEL and UniMedVL.

Two wire formats, chosen with ``api=``:

* ``"images"``: ``POST {base_url}/images/generations`` (JSON) for text-to-image and
  ``POST {base_url}/images/edits`` (multipart: the source PNG as ``image``) for the image-to-image tasks;
  images come back as ``data[].b64_json``, text (a model's reasoning) as ``cot_output``.
* ``"chat"``: ``POST {base_url}/chat/completions`` with ``"modalities": ["image"]``, the prompt as a
  role-less ``<|im_start|>…<|im_end|>`` text part and the source as an ``image_url`` data URL; images
  come back as ``image_url`` data URLs in the choices' content, text (a counterfactual's explanation)
  as text parts.

BAGEL's sampling knobs (``sampling="bagel"``, the default) go in the body's top level:
``cfg_text_scale`` (from ``guidance``), ``cfg_img_scale`` (from ``image_guidance``), ``cfg_interval``,
``cfg_renorm_type``, ``cfg_renorm_min``, ``timestep_shift``, ``num_inference_steps`` (from ``steps``),
``seed``, and the size (``"size": "WxH"`` on the images API, ``height``/``width`` in chat). Unset knobs
get BAGEL's documented defaults (T2I: guidance 4, interval [0.4, 1], global renorm; edit: image guidance
2, interval [0, 1], text-channel renorm; shift 3; 50 steps), and the result records every value sent.

Transport, retries, timeouts and errors are the understanding client's (:mod:`okaflow.model_backend._http`).
One request is sent per output image, with seeds ``seed, seed + 1, …``, so each image is reproducible.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from PIL import Image, UnidentifiedImageError

from okaflow._constants import (
    BAGEL_CFG_IMG_SCALE,
    BAGEL_CFG_TEXT_SCALE,
    BAGEL_STEPS,
    BAGEL_TIMESTEP_SHIFT,
    ENV_API_KEY,
    ENV_GENERATION_MODEL,
    ENV_GENERATION_URL,
    ENV_MODEL,
    ENV_MODEL_URL,
    GENERATION_READ_TIMEOUT_S,
    HTTP_CONNECT_TIMEOUT_S,
    HTTP_POOL_TIMEOUT_S,
    HTTP_WRITE_TIMEOUT_S,
    SYNTHETIC_LABEL,
)
from okaflow._errors import BackendOutputError, ConfigurationError, GenerationSizeError, GenerationTaskError
from okaflow._urls import without_credentials
from okaflow.model_backend._http import HttpCall, RetryPolicy
from okaflow.tools.generation._limits import UNIMEDVL_LIMITS, GenerationLimits, fit_sources
from okaflow.tools.generation._metrics import score_against_reference
from okaflow.tools.generation._pipelines import IMAGE_TASKS
from okaflow.tools.generation._protocol import GenerationResult
from okaflow.tools.generation._tasks import (
    ImageToImageRequest,
    SuperResolution,
    TaskRequest,
    TextToImage,
    refuse_interpolation,
)
from okaflow.tools.imaging import MedicalImage
from okaflow.tools.reporting import png_bytes, stamp_label

__all__ = ["EndpointCall", "ImageEndpointCommon"]

_NAME = "image-endpoint"
_TASKS = ("text_to_image", "super_resolution", *sorted(IMAGE_TASKS))
# UniMedVL's MRI super-resolution is 4×.
_DEFAULT_SR_SCALE = 4


@dataclass
class EndpointCall:
    """The requests for one generation task (one per output image) and what they were built from."""

    typed: TaskRequest
    calls: list[HttpCall]
    seeds: list[int]
    sent: dict[str, Any]
    source_sizes: list[list[int]] = field(default_factory=list)


class ImageEndpointCommon:
    """Configuration, request bodies and reply parsing shared by the sync and async image-endpoint clients."""

    name = _NAME

    def __init__(
        self,
        *,
        base_url: str | None,
        model: str | None,
        api_key: str | None,
        api: Literal["images", "chat"],
        sampling: Literal["bagel", "generic"],
        timeout: httpx.Timeout | float | None,
        max_retries: int,
        limits: GenerationLimits | None,
        extra_body: dict[str, Any] | None,
    ) -> None:
        url = base_url or os.environ.get(ENV_GENERATION_URL) or os.environ.get(ENV_MODEL_URL)
        if not url:
            raise ConfigurationError(
                f"no image endpoint URL: pass base_url= or set ${ENV_GENERATION_URL}",
                hint="e.g. http://gpu-host:8000/v1 (vllm-omni serving UniMedVL)",
            )
        chosen = model or os.environ.get(ENV_GENERATION_MODEL) or os.environ.get(ENV_MODEL)
        if not chosen:
            raise ConfigurationError(
                f"no generation model name: pass model= or set ${ENV_GENERATION_MODEL}",
                hint="every generated image records the model that made it",
            )
        if api not in ("images", "chat"):
            raise ConfigurationError(f"api must be 'images' or 'chat', not {api!r}")
        if sampling not in ("bagel", "generic"):
            raise ConfigurationError(f"sampling must be 'bagel' or 'generic', not {sampling!r}")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, not {max_retries}")
        self.base_url = url.rstrip("/")
        self.model = chosen
        self.api = api
        self.sampling = sampling
        self.limits = limits
        self.extra_body = dict(extra_body or {})
        # Enough to connect again on resume or rerun; the API key is read from the environment then, never recorded.
        self.rebuild_spec: dict[str, Any] | None = (
            {
                "kind": "endpoint",
                "base_url": self.shown_url,
                "model": self.model,
                "api": api,
                "sampling": sampling,
            }
            if limits is UNIMEDVL_LIMITS and not extra_body
            else None
        )
        self._api_key = api_key or os.environ.get(ENV_API_KEY) or None
        if timeout is None:
            self.timeout = httpx.Timeout(
                connect=HTTP_CONNECT_TIMEOUT_S,
                read=GENERATION_READ_TIMEOUT_S,
                write=HTTP_WRITE_TIMEOUT_S,
                pool=HTTP_POOL_TIMEOUT_S,
            )
        else:
            self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._policy = RetryPolicy(max_retries=max_retries)

    @property
    def model_id(self) -> str:
        return self.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.shown_url!r}, model={self.model!r}, api={self.api!r})"

    @property
    def shown_url(self) -> str:
        """The base URL as reports, captions and records show it: no user, password or query."""
        return without_credentials(self.base_url)

    def supports(self, task: str) -> bool:
        return task in _TASKS

    def build(self, typed: TaskRequest, images: Mapping[str, MedicalImage]) -> EndpointCall:
        """The HTTP calls for ``typed``: one per output image, each with its own seed.

        Raises:
            GenerationTaskError: A classical task (windows, montages, comparisons): not a model's job.
            GenerationSizeError: The requested or implied size breaks ``limits``.
            ConfigurationError: Unknown sources, or a parameter the endpoint does not take.
        """
        if typed.task not in _TASKS:
            raise GenerationTaskError(
                f"the image endpoint does not do {typed.task!r}", task=typed.task, backend=_NAME, supported=list(_TASKS)
            )
        missing = [s for s in typed.sources if s not in images]
        if missing:
            raise ConfigurationError(
                f"generation task {typed.task!r} names unknown source images {missing}",
                hint=f"use ids from the case: {sorted(images)}",
            )
        edit = not isinstance(typed, TextToImage)
        if edit and len(typed.sources) != 1:
            raise ConfigurationError(f"{typed.task} through an image endpoint takes exactly one source image")
        knobs = self._knobs(typed, edit)
        refuse_interpolation(typed, backend=_NAME, supported=sorted(_TASKS))
        source, size, source_sizes = self._source_and_size(typed, images)
        seed = typed.seed if typed.seed is not None else secrets.randbelow(2**31)
        seeds = [seed + i for i in range(typed.num_images or 1)]
        prompt = typed.composed_prompt()
        if prompt is None:
            raise ConfigurationError(f"{typed.task} through an image endpoint needs a prompt")
        common = {**knobs, **({"negative_prompt": typed.negative_prompt} if typed.negative_prompt else {})}
        calls = [self._call(typed, prompt, source, size, {**common, "seed": s}) for s in seeds]
        sent = {"api": self.api, "prompt": prompt, **common, "seeds": seeds}
        if size is not None:
            sent["size"] = list(size)
        return EndpointCall(typed, calls, seeds, sent, source_sizes)

    def _knobs(self, typed: TaskRequest, edit: bool) -> dict[str, Any]:
        if isinstance(typed, ImageToImageRequest) and typed.strength is not None:
            raise ConfigurationError(
                "an image endpoint takes no img2img strength", hint="use image_guidance (cfg_img_scale) instead"
            )
        image_guidance = typed.image_guidance if isinstance(typed, ImageToImageRequest) else None
        if self.sampling == "generic":
            if typed.bagel is not None or image_guidance is not None:
                raise ConfigurationError("BAGEL knobs and image_guidance need sampling='bagel'")
            generic = {"num_inference_steps": typed.steps, "guidance_scale": typed.guidance}
            return {k: v for k, v in generic.items() if v is not None}
        bagel = typed.bagel.model_dump(exclude_none=True) if typed.bagel is not None else {}
        knobs: dict[str, Any] = {
            "num_inference_steps": typed.steps or BAGEL_STEPS,
            "cfg_text_scale": typed.guidance if typed.guidance is not None else BAGEL_CFG_TEXT_SCALE,
            "cfg_interval": [0.0, 1.0] if edit else [0.4, 1.0],
            "cfg_renorm_type": "text_channel" if edit else "global",
            "timestep_shift": BAGEL_TIMESTEP_SHIFT,
        }
        if edit:
            knobs["cfg_img_scale"] = image_guidance if image_guidance is not None else BAGEL_CFG_IMG_SCALE
        knobs.update({k: list(v) if isinstance(v, tuple) else v for k, v in bagel.items()})
        return knobs

    def _source_and_size(
        self, typed: TaskRequest, images: Mapping[str, MedicalImage]
    ) -> tuple[bytes | None, tuple[int, int] | None, list[list[int]]]:
        """The source PNG (fitted onto the size grid) and the output size to ask for."""
        limits = self.limits or GenerationLimits(max_side=1 << 16, multiple=1)
        if isinstance(typed, TextToImage):
            size = typed.requested_size()
            if size is None:
                return None, None, []
            limits.check(size, what="the requested text-to-image size")
            return None, size, []
        factor = 1
        if isinstance(typed, SuperResolution):
            factor = typed.scale or _DEFAULT_SR_SCALE
        (source,) = fit_sources(typed.sources, images, self.limits, factor=factor)
        fitted = source.fitted
        return png_bytes(fitted), (fitted.width * factor, fitted.height * factor), [list(source.shown.size)]

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _call(
        self, typed: TaskRequest, prompt: str, source: bytes | None, size: tuple[int, int] | None, knobs: dict[str, Any]
    ) -> HttpCall:
        call: dict[str, Any] = {"method": "POST", "headers": self._headers(), "timeout": self.timeout}
        call |= {"policy": self._policy, "base_url": self.base_url, "backend": _NAME}
        # A generation is long and costly: one the server may still be running (a read timeout, a dropped
        # answer) is not sent again; refused connections and 429/5xx answers are.
        call["retry_unsent_only"] = True
        if self.api == "chat":
            content: list[dict[str, Any]] = [{"type": "text", "text": f"<|im_start|>{prompt}<|im_end|>"}]
            if source is not None:
                url = "data:image/png;base64," + base64.b64encode(source).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": url}})
            body: dict[str, Any] = {
                "model": self.model,
                "messages": [{"role": "user", "content": content}],
                "modalities": ["image"],
                **knobs,
            }
            if size is not None:
                body["width"], body["height"] = size
            body.update(self.extra_body)
            return HttpCall(url=f"{self.base_url}/chat/completions", json=body, **call)
        fields: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1, "response_format": "b64_json", **knobs}
        if size is not None:
            fields["size"] = f"{size[0]}x{size[1]}"
        fields.update(self.extra_body)
        if source is None:
            return HttpCall(url=f"{self.base_url}/images/generations", json=fields, **call)
        form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        files = [("image", ("source.png", source, "image/png"))]
        return HttpCall(url=f"{self.base_url}/images/edits", json=None, data=form, files=files, **call)

    def parse(self, response: httpx.Response) -> tuple[list[Image.Image], str | None, str]:
        """The images, text and model id of a 2xx reply.

        Raises:
            BackendOutputError: The reply holds no image, or an image that does not decode.
        """
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BackendOutputError(
                f"{response.request.url} answered {response.status_code} but not with JSON",
                backend=_NAME,
                raw=response.text[:2000],
                hint="is base_url the server's /v1 root?",
            )
        encoded: list[str] = []
        texts: list[str] = []
        if self.api == "chat":
            for choice in data.get("choices") or []:
                content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
                if isinstance(content, str) and content.strip():
                    texts.append(content.strip())
                for part in content if isinstance(content, list) else []:
                    if not isinstance(part, dict):
                        continue
                    url = (part.get("image_url") or {}).get("url", "")
                    if isinstance(url, str) and url.startswith("data:image"):
                        encoded.append(url.partition(",")[2])
                    elif part.get("type") == "text" and isinstance(part.get("text"), str) and part["text"].strip():
                        texts.append(part["text"].strip())
        else:
            encoded = [d["b64_json"] for d in data.get("data") or [] if isinstance(d, dict) and d.get("b64_json")]
            if isinstance(data.get("cot_output"), str) and data["cot_output"].strip():
                texts.append(data["cot_output"].strip())
        if not encoded:
            raise BackendOutputError(
                f"{response.request.url} answered without an image",
                backend=_NAME,
                raw=response.text[:2000],
                hint="does the server generate images (vllm-omni with an image-output model)?",
            )
        return [_decode(e) for e in encoded], "\n\n".join(texts) or None, str(data.get("model") or self.model)

    def result(
        self,
        built: EndpointCall,
        replies: list[tuple[list[Image.Image], str | None, str]],
        images: Mapping[str, MedicalImage],
        started: float,
    ) -> GenerationResult:
        """The labelled result of every reply to ``built``'s calls (scored first when a reference is named)."""
        typed = built.typed
        pictures = [img for images, _, _ in replies for img in images]
        seeds = [seed for seed, (images, _, _) in zip(built.seeds, replies, strict=True) for _ in images]
        if self.limits is not None:
            for img in pictures:
                try:
                    self.limits.check(img.size, what="the image the endpoint returned, of size")
                except GenerationSizeError as exc:  # the endpoint's answer, not the caller's request, is wrong
                    raise BackendOutputError(
                        f"{self.shown_url} returned a {img.width}×{img.height} image: {exc.message}",
                        backend=_NAME,
                        hint="check the server's generation size settings, or build the generator with the "
                        "limits its model really has (limits=GenerationLimits(...))",
                    ) from None
        text = "\n\n".join(t for _, t, _ in replies if t) or None
        model_id = replies[0][2]
        source = f" of {typed.sources[0]}" if typed.sources else ""
        captions = [
            f"{typed.task.replace('_', ' ').capitalize()}{source} by {model_id} via {self.shown_url} "
            f"({self.api} API, seed {seed}, {img.width}×{img.height} px)"
            for seed, img in zip(seeds, pictures, strict=True)
        ]
        used = {**built.sent, "returned_sizes": [list(img.size) for img in pictures]}
        reference = getattr(typed, "reference", None)
        if reference is not None:
            used["metrics"], notes = score_against_reference([p.convert("RGB") for p in pictures], reference, images)
            captions = [f"{caption}; {note}" for caption, note in zip(captions, notes, strict=True)]
        if built.source_sizes:
            used["source_sizes"] = built.source_sizes
        return GenerationResult(
            task=typed.task,
            images=[stamp_label(img.convert("RGB"), SYNTHETIC_LABEL) for img in pictures],
            captions=captions,
            label=SYNTHETIC_LABEL,
            backend=_NAME,
            model_id=model_id,
            ai_generated=True,
            derived_from=list(typed.sources),
            params_used=used,
            seed=built.seeds[0],
            elapsed_s=round(time.perf_counter() - started, 6),
            text=text,
        )


def _decode(encoded: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)))
        img.load()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise BackendOutputError(
            f"the endpoint returned an image that does not decode ({exc})", backend=_NAME, raw=encoded[:200]
        ) from None
    return img
