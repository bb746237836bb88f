"""Build the tiny, seeded, randomly initialised diffusers pipelines the generation tests load.

No weights can be downloaded here, so the tests build their own from config, the same way every time
(fixed seeds, a fixed byte-level CLIP vocabulary), a few MB each, in seconds. They run the real
diffusers code; their pictures are noise-like, so tests check routing, shapes, determinism, labels and
provenance, never what an image shows.

- ``sd``: a StableDiffusionPipeline (UNet2DConditionModel + AutoencoderKL + CLIPTextModel, 64 px
  images); okaflow derives the img2img pipeline from it.
- ``sd-upscaler``: a StableDiffusionUpscalePipeline (4× upscaler: a 3-level VAE).
- ``instruct-pix2pix``: a StableDiffusionInstructPix2PixPipeline (instruction editing).
- ``ddpm``: an unconditional DDPMPipeline (UNet2DModel, 32 px images).

Run with an interpreter that has okaflow[generation] (the test environment)::

    .venv/bin/python tests/models/build_tiny_pipelines.py OUT_DIR
    .venv/bin/python tests/models/build_tiny_pipelines.py OUT_DIR --sd-sized sd15|small

It writes one folder per pipeline under ``OUT_DIR`` and prints ``{name: path}`` as JSON. ``--sd-sized``
builds one Stable Diffusion pipeline of a real size instead (``sd15``: SD 1.5's architecture at 512²,
for the GPU test and the benchmark; ``small``: the same structure at 128² for CPUs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SEED = 20261124
_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
}


def _byte_chars() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the bytes 0-255 (GPT-2's table)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def build_tokenizer(out: Path) -> Any:
    """A CLIP tokenizer over single bytes (every byte alone and at a word's end; no merges)."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder = out / "_tokenizer_src"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>", model_max_length=77
    )


def text_encoder(tokenizer: Any) -> Any:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **_CLIP,
    )
    return CLIPTextModel(config).eval()


def build_sd(out: Path, tokenizer: Any, *, in_channels: int = 4, pix2pix: bool = False) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        PNDMScheduler,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_CLIP["hidden_size"],
        norm_num_groups=32,
    )
    torch.manual_seed(SEED + 1)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
    )
    parts: dict[str, Any] = {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder(tokenizer),
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    if pix2pix:
        pipe: Any = StableDiffusionInstructPix2PixPipeline(scheduler=DDIMScheduler(), **parts)
        target = out / "instruct-pix2pix"
    else:
        scheduler = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
        pipe = StableDiffusionPipeline(scheduler=scheduler, image_encoder=None, **parts)
        target = out / "sd"
    pipe.save_pretrained(target)
    return target


def build_upscaler(out: Path, tokenizer: Any) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(SEED + 2)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=7,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_CLIP["hidden_size"],
        attention_head_dim=8,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=100,
    )
    torch.manual_seed(SEED + 3)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        scaling_factor=0.08333,  # the x4 upscaler's own (diffusers warns about any other)
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    target = out / "sd-upscaler"
    pipe.save_pretrained(target)
    return target


def build_ddpm(out: Path) -> Path:
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(SEED + 4)
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    target = out / "ddpm"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(target)
    return target


# Stable Diffusion 1.5's architecture (the GPU test and benchmark: a 512² pipeline with random weights),
# and a CPU-sized one with the same structure (128² images).
SD_PRESETS: dict[str, dict[str, Any]] = {
    "sd15": {
        "unet": (320, 640, 1280, 1280),
        "layers": 2,
        "sample": 64,
        "vae": (128, 256, 512, 512),
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12},
        "heads": 8,
    },
    "small": {
        "unet": (64, 128, 256),
        "layers": 1,
        "sample": 32,
        "vae": (32, 64, 64),
        "text": {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4, "num_hidden_layers": 2},
        "heads": 4,
    },
}


def build_sd_sized(out: Path, preset: str) -> Path:
    """A StableDiffusionPipeline of a real architecture (``SD_PRESETS``) with random seeded weights."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    spec = SD_PRESETS[preset]
    tokenizer = build_tokenizer(out)
    levels = len(spec["unet"])
    torch.manual_seed(SEED + 10)
    unet = UNet2DConditionModel(
        sample_size=spec["sample"],
        block_out_channels=spec["unet"],
        layers_per_block=spec["layers"],
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        cross_attention_dim=spec["text"]["hidden_size"],
        attention_head_dim=spec["heads"],
    )
    torch.manual_seed(SEED + 11)
    vae = AutoencoderKL(
        block_out_channels=spec["vae"],
        down_block_types=("DownEncoderBlock2D",) * len(spec["vae"]),
        up_block_types=("UpDecoderBlock2D",) * len(spec["vae"]),
        latent_channels=4,
        sample_size=spec["sample"] * 2 ** (len(spec["vae"]) - 1),
    )
    torch.manual_seed(SEED + 12)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=77,
        **spec["text"],
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=CLIPTextModel(config).eval(),
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    target = out / f"sd-{preset}"
    pipe.save_pretrained(target)
    return target


def main(out: Path) -> dict[str, str]:
    tokenizer = build_tokenizer(out)
    built = {
        "sd": build_sd(out, tokenizer),
        "sd-upscaler": build_upscaler(out, tokenizer),
        "instruct-pix2pix": build_sd(out, tokenizer, in_channels=8, pix2pix=True),
        "ddpm": build_ddpm(out),
    }
    return {name: str(path) for name, path in built.items()}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--sd-sized":
        print(json.dumps({f"sd-{sys.argv[3]}": str(build_sd_sized(Path(sys.argv[1]), sys.argv[3]))}))
    else:
        print(json.dumps(main(Path(sys.argv[1]))))
