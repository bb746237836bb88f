"""Build the tiny, seeded, randomly initialised models the real-engine tests serve.

No weights can be downloaded here, so the tests build their own: the same code every time
(fixed seeds, a tokenizer trained on a fixed corpus), a few MB each, built in seconds:

- ``qwen2-text``: a text-only Qwen2 (hidden 64, 2 layers, 2 heads: vLLM's CPU attention needs a
  head size of at least 32) with a ChatML chat template.
- ``blip2-vlm``: an image+text BLIP-2 (ViT hidden 64 on 28 px images with 14 px patches, a
  Q-Former with 4 query tokens, an OPT language model of hidden 64).

Both share one byte-level BPE tokenizer (vocabulary 1024) with ChatML and vision special tokens.
The output is random text; tests check structure, wire behaviour and provenance, never prose.

Run with an interpreter that has torch, transformers and tokenizers (the vLLM environment does)::

    .venv-vllm/bin/python tests/models/build_tiny_models.py OUT_DIR

It writes ``OUT_DIR/qwen2-text`` and ``OUT_DIR/blip2-vlm`` and prints their paths as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SEED = 20261123
VOCAB_SIZE = 1024
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<image>",
    "<think>",
    "</think>",
]
# ChatML; the generation prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_WORDS = (
    '{ } [ ] : , " true false null claims tool_calls visual_requests done section kind text cites '
    "findings comparison impression answer fact measurement image_finding assessment tool arguments "
    "task image_ids params reason Observation DiagnosticReport ImagingStudy Patient Condition "
    "chest CT MR ultrasound lesion nodule stable interval size mm cm HU mean window series slice "
    "the a of and in with no is are was not prior current report patient evidence 0 1 2 3 4 5 6 7 8 9"
)


def _corpus() -> list[str]:
    """A fixed training corpus: JSON punctuation, report vocabulary and the digits, repeated."""
    words = _WORDS.split()
    lines = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    return lines * 20 + [json.dumps({"claims": [], "tool_calls": [], "visual_requests": [], "done": True})] * 50


def build_tokenizer(out: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
        model_max_length=32768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    return tokenizer


def build_qwen2(out: Path) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer(out)
    torch.manual_seed(SEED)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(out)
    return out


def build_blip2(out: Path) -> Path:
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        GenerationConfig,
        OPTConfig,
    )

    tokenizer = build_tokenizer(out)
    torch.manual_seed(SEED)
    num_query_tokens = 4
    config = Blip2Config(
        vision_config=Blip2VisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        ).to_dict(),
        qformer_config=Blip2QFormerConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            encoder_hidden_size=64,
            vocab_size=VOCAB_SIZE,
        ).to_dict(),
        text_config=OPTConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            word_embed_proj_dim=64,
            ffn_dim=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32768,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ).to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Blip2ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(out)
    image_processor = BlipImageProcessor(size={"height": 28, "width": 28})
    Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens
    ).save_pretrained(out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    built = {
        "qwen2-text": str(build_qwen2(root / "qwen2-text")),
        "blip2-vlm": str(build_blip2(root / "blip2-vlm")),
    }
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
