"""Generation overhead: okaflow's DiffusersGenerator vs a raw diffusers call on the same loaded pipeline.

Run: ``python benchmarks/bench_generation.py [--preset small|sd15] [--device cpu|cuda] [--dtype D]
[--steps N] [--images N] [--rounds R]``

Builds a Stable Diffusion pipeline of a real architecture with random seeded weights
(``tests/models/build_tiny_pipelines.py --sd-sized``; ``sd15``: SD 1.5 at 512², for a GPU; ``small``:
the same structure at 128², for a CPU), loads it once in a :class:`DiffusersGenerator`, and times,
on that very pipeline object:

- raw: ``pipe(prompt=[p] * n, height, width, num_inference_steps, guidance_scale,
  generator=[one seeded torch.Generator per image])``, as a diffusers user would write it;
- okaflow: ``generator.generate(TextToImage(...))`` for the same images and seeds, which adds request
  validation, the size-limit check, the synthetic label burnt into each image and the result record;

and the same for image-to-image (a counterfactual on an MR slice). Rounds alternate which side goes
first. Printed, by wall clock and by this process's CPU time (the second is steadier on a machine
shared with other work): images/s (best round) and the okaflow/raw ratio of the best rounds and the
median of per-round ratios (target ≥ 0.97).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models"))

import torch  # noqa: E402
from build_tiny_pipelines import build_sd_sized  # noqa: E402

from okaflow._case import resolve_image_path  # noqa: E402
from okaflow.tools.generation import Counterfactual, DiffusersGenerator, TextToImage  # noqa: E402
from okaflow.tools.imaging import load_image, render_frame  # noqa: E402

PROMPT = "frontal chest X-ray, right lower lobe consolidation"


def timed(fn: Callable[[], Any], images: int) -> tuple[float, float]:
    """Images per second of wall time, and of this process's CPU time (robust to other processes' load)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu)


def compare(name: str, raw: Callable[[], Any], ours: Callable[[], Any], images: int, rounds: int) -> dict[str, Any]:
    raw(), ours()  # warm-up: kernels, allocator, caches
    raw_rates: list[tuple[float, float]] = []
    our_rates: list[tuple[float, float]] = []
    for r in range(rounds):
        pair = [(raw, raw_rates), (ours, our_rates)]
        for fn, rates in pair if r % 2 == 0 else reversed(pair):
            rates.append(timed(fn, images))
    row: dict[str, Any] = {"case": name}
    for index, clock in enumerate(("wall", "cpu")):
        raws = [rate[index] for rate in raw_rates]
        ours_ = [rate[index] for rate in our_rates]
        ratios = [o / r for o, r in zip(ours_, raws, strict=True)]
        row[clock] = {
            "raw_images_per_s": round(max(raws), 4),
            "okaflow_images_per_s": round(max(ours_), 4),
            "ratio_best": round(max(ours_) / max(raws), 4),
            "ratio_median": round(statistics.median(ratios), 4),
        }
        c = row[clock]
        print(
            f"{name:<15} {clock:<4} raw {c['raw_images_per_s']:8.3f} img/s   okaflow {c['okaflow_images_per_s']:8.3f} "
            f"img/s   ratio best {c['ratio_best']:.3f}   median {c['ratio_median']:.3f}"
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("small", "sd15"), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="default: 20 on CUDA, 4 on CPU")
    parser.add_argument("--images", type=int, default=None, help="images per call (default: 4 on CUDA, 2 on CPU)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pipeline", type=Path, help="an already built pipeline folder (skips building)")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    dtype = args.dtype or ("float16" if gpu else "float32")
    steps = args.steps or (20 if gpu else 4)
    n = args.images or (4 if gpu else 2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.pipeline or build_sd_sized(Path(tmp), args.preset)
        gen = DiffusersGenerator(folder, device=args.device, dtype=dtype, max_batch=n, model_name=f"sd-{args.preset}")
        pipe = gen.pipeline
        side = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        print(
            f"{type(pipe).__name__} ({args.preset}, {side}×{side}) on {args.device} {dtype}: {steps} steps, "
            f"{n} images per call, {args.rounds} rounds, torch {torch.__version__}, threads {torch.get_num_threads()}"
        )

        def gens() -> list[torch.Generator]:
            return [torch.Generator("cpu").manual_seed(1 + i) for i in range(n)]

        rows = [
            compare(
                "text_to_image",
                lambda: (
                    pipe(
                        prompt=[f"chest X-ray: {PROMPT}"] * n,
                        height=side,
                        width=side,
                        num_inference_steps=steps,
                        guidance_scale=7.5,
                        generator=gens(),
                        output_type="pil",
                    ).images
                ),
                lambda: gen.generate(
                    TextToImage(prompt=PROMPT, modality="CXR", seed=1, num_images=n, steps=steps, guidance=7.5), {}
                ),
                n,
                args.rounds,
            )
        ]
        # The MR slice at the pipeline's size, as a case image (so okaflow's path does not resize it either).
        mr_small = load_image(resolve_image_path("pydicom:MR_small.dcm", ROOT))
        png = Path(tmp) / "mr.png"
        render_frame(mr_small, frame="middle").resize((side, side)).save(png)
        mr = load_image(png)
        source = render_frame(mr, frame="middle").convert("RGB")
        img2img = gen._pipes["image_to_image"]
        edit = Counterfactual(sources=[mr.id], edit="without the lesion", seed=1, num_images=n, steps=steps)
        rows.append(
            compare(
                "image_to_image",
                lambda: (
                    img2img(
                        prompt=["without the lesion"] * n,
                        image=[source] * n,
                        num_inference_steps=steps,
                        guidance_scale=7.5,
                        generator=gens(),
                        output_type="pil",
                    ).images
                ),
                lambda: gen.generate(edit, {mr.id: mr}),
                n,
                args.rounds,
            )
        )
    print(json.dumps({"preset": args.preset, "device": args.device, "dtype": dtype, "steps": steps, "rows": rows}))


if __name__ == "__main__":
    main()
