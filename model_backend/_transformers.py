"""An in-process understanding backend: a local transformers vision-language model, no server.

For users without a GPU host, for tests, and for small VLMs that fit on one machine. It speaks the
same protocol as the served backends: the same requests, the same :class:`UnderstandResult` with
provenance, and ``response_schema`` honoured by grammar-constrained decoding (xgrammar) so that the
answer can only be valid JSON for the schema. Needs ``pip install 'okaflow[local]'``.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from okaflow._errors import (
    BackendError,
    BackendImageLimitError,
    BackendOutputError,
    ConfigurationError,
    MissingExtraError,
)
from okaflow._types import Provenance
from okaflow.model_backend._answer import parse_json_answer, split_reasoning
from okaflow.model_backend._protocol import UnderstandRequest, UnderstandResult, prompt_hash

if TYPE_CHECKING:
    import torch

__all__ = ["TransformersBackend"]

_DTYPES = ("float32", "float16", "bfloat16")
# Generation draws from torch's process-wide RNG: one generation at a time keeps seeds meaningful.
_GENERATE_LOCK = threading.Lock()


def _cut_at_stop(text: str, stops: list[str]) -> str:
    """The text before the first stop sequence (transformers keeps it; OpenAI servers do not)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise MissingExtraError("local", feature="the in-process transformers backend", missing=module) from None


class TransformersBackend:
    """A local vision-language (or text) model run in this process with transformers.

    Loads once, at construction, on an explicit ``device`` and ``dtype``. Image+text models load with
    ``AutoModelForImageTextToText`` (BLIP-2, LLaVA-style, Qwen-VL-style …), text models with
    ``AutoModelForCausalLM``; the processor (or tokenizer) and its chat template come from the same folder.

    Args:
        model_path: A local model folder (nothing is downloaded).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` … — never guessed.
        dtype: ``"float32"`` (CPU), ``"bfloat16"`` or ``"float16"`` (GPU).
        model_name: The model id recorded in provenance; default: the folder name.
        chat_template: A chat template to use instead of the model's own (e.g. ``UNIMEDVL_CHAT_TEMPLATE``).
        max_images_per_request: Images one prompt may carry; default: 1 for BLIP-2 (its architecture
            takes one), otherwise no limit.
        structured_output: Constrain decoding to ``response_schema`` with xgrammar (default on).

    Raises:
        ConfigurationError: The folder is missing, or ``dtype`` is unknown.
        MissingExtraError: torch / transformers / xgrammar are not installed.
    """

    is_model = True

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        model_name: str | None = None,
        chat_template: str | None = None,
        max_images_per_request: int | None = None,
        structured_output: bool = True,
    ) -> None:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ConfigurationError(
                f"{path} is not a model folder (no config.json)", hint="pass the folder save_pretrained() wrote"
            )
        if max_images_per_request is not None and max_images_per_request < 1:
            raise ConfigurationError(f"max_images_per_request must be 1 or more, not {max_images_per_request}")
        if dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {_DTYPES}, not {dtype!r}")
        torch = _require("torch")
        transformers = _require("transformers")
        self.path = path
        self.device = device
        self.dtype = dtype
        self._name = model_name or path.name
        self.chat_template = chat_template
        self.structured_output = structured_output
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        self._vision = hasattr(config, "vision_config")
        torch_dtype = getattr(torch, dtype)
        if self._vision:
            self._processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
            self._tokenizer = self._processor.tokenizer
            loader = transformers.AutoModelForImageTextToText
        else:
            self._processor = None
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            loader = transformers.AutoModelForCausalLM
        if chat_template is None and not (
            getattr(self._processor, "chat_template", None) or getattr(self._tokenizer, "chat_template", None)
        ):
            raise ConfigurationError(
                f"{path} has no chat template", hint="pass chat_template= (e.g. UNIMEDVL_CHAT_TEMPLATE for UniMedVL)"
            )
        self._model = loader.from_pretrained(path, dtype=torch_dtype, local_files_only=True).to(device).eval()
        is_blip2 = getattr(config, "model_type", "") == "blip-2"
        pixel_values = inspect.signature(self._model.generate).parameters.get("pixel_values")
        self._needs_image = pixel_values is not None and pixel_values.default is inspect.Parameter.empty
        self.max_images_per_request = max_images_per_request or (1 if is_blip2 else None)
        self._grammars: dict[str, Any] = {}
        self._compiler: Any = None

    @property
    def name(self) -> str:
        return "transformers"

    @property
    def model_id(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"TransformersBackend({str(self.path)!r}, device={self.device!r}, dtype={self.dtype!r})"

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        """Generate an answer in this process (greedy at ``temperature`` 0, seeded sampling otherwise).

        Raises:
            BackendImageLimitError: More images than the model takes; or images for a text-only model.
            BackendError: No image for a model that needs one in every prompt (BLIP-2).
            BackendOutputError: The answer is not the JSON the schema asked for.
        """
        import torch

        self._check_images(request)
        inputs = self._inputs(request)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        options: dict[str, Any] = {"max_new_tokens": request.max_tokens}
        if request.temperature > 0:
            options.update(do_sample=True, temperature=request.temperature)
        else:
            options["do_sample"] = False
        if request.stop:
            options.update(stop_strings=list(request.stop), tokenizer=self._tokenizer)
        if request.response_schema is not None and self.structured_output:
            options["logits_processor"] = [self._grammar_processor(request.response_schema)]
        started = time.perf_counter()
        with _GENERATE_LOCK, torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            output = self._model.generate(**inputs, **options)
        latency = time.perf_counter() - started
        new_tokens = output[0, prompt_tokens:] if output.shape[-1] > prompt_tokens else output[0]
        completion = int(new_tokens.shape[-1])
        eos = self._tokenizer.eos_token_id
        truncated = completion >= request.max_tokens and (eos is None or int(new_tokens[-1]) != eos)
        raw_text = _cut_at_stop(self._tokenizer.decode(new_tokens, skip_special_tokens=True), request.stop)
        text, reasoning = split_reasoning(raw_text)
        parsed = parse_json_answer(text, request, truncated=truncated, backend=self.name)
        return UnderstandResult(
            text=text,
            parsed=parsed,
            reasoning=reasoning,
            provenance=Provenance(
                backend=self.name,
                model_id=self._name,
                prompt_hash=prompt_hash(request),
                seed=request.seed,
                latency_s=round(latency, 3),
                usage={
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion,
                },
            ),
        )

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        """:meth:`understand` in a worker thread (generation is CPU/GPU-bound and runs one at a time)."""
        return await asyncio.to_thread(self.understand, request)

    def close(self) -> None:
        """Drop the model (frees its memory once nothing else holds it)."""
        self._model = None

    def _check_images(self, request: UnderstandRequest) -> None:
        if self._vision and not request.images and self._needs_image:
            raise BackendError(
                f"{self._name} needs an image in every prompt (its generate() takes pixel_values)",
                backend=self.name,
                hint="attach an image to the request, or use a text model for text-only questions",
            )
        limit = self.max_images_per_request if self._vision else 0
        if limit is not None and len(request.images) > limit:
            raise BackendImageLimitError(
                f"the request carries {len(request.images)} images; {self._name} takes at most {limit} per prompt"
                + ("" if self._vision else " (it is a text-only model)"),
                count=len(request.images),
                limit=limit,
                backend=self.name,
            )

    def _inputs(self, request: UnderstandRequest) -> dict[str, torch.Tensor]:
        messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in request.messages]
        if self._processor is None:
            prompt = self._tokenizer.apply_chat_template(
                messages, chat_template=self.chat_template, add_generation_prompt=True, tokenize=False
            )
            encoded = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        else:
            from PIL import Image

            if request.images:
                # Image parts on the last user message, as the OpenAI clients send them.
                last = max(i for i, m in enumerate(messages) if m["role"] == "user")
                messages[last]["content"] = [
                    *({"type": "image"} for _ in request.images),
                    {"type": "text", "text": messages[last]["content"]},
                ]
            # A processor without its own template (BLIP-2's) uses the tokenizer's.
            renderer = self._processor if getattr(self._processor, "chat_template", None) else self._tokenizer
            prompt = renderer.apply_chat_template(
                messages, chat_template=self.chat_template, add_generation_prompt=True, tokenize=False
            )
            images = [Image.open(io.BytesIO(i.png)).convert("RGB") for i in request.images]
            encoded = self._processor(images=images or None, text=prompt, return_tensors="pt")
        return {k: v.to(self.device) for k, v in encoded.items()}

    def _grammar_processor(self, schema: dict[str, Any]) -> Any:
        _require("xgrammar")
        import xgrammar
        import xgrammar.contrib.hf

        if self._compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=self._model.get_output_embeddings().weight.shape[0]
            )
            self._compiler = xgrammar.GrammarCompiler(info)
        key = json.dumps(schema, sort_keys=True)
        compiled = self._grammars.get(key)
        if compiled is None:
            try:
                compiled = self._compiler.compile_json_schema(key, any_whitespace=False)
            except (RuntimeError, ValueError) as exc:
                raise BackendOutputError(
                    f"xgrammar cannot compile the response schema ({exc})",
                    backend=self.name,
                    hint="simplify the schema, or pass structured_output=False and validate the answer yourself",
                ) from None
            self._grammars[key] = compiled
        # A processor holds per-generation matcher state: a fresh one per call.
        return xgrammar.contrib.hf.LogitsProcessor(compiled)
