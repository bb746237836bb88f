"""Client overhead: okaflow's sync and async OpenAI clients vs raw httpx, same requests, same vLLM server.

Run: ``python benchmarks/bench_client_overhead.py [--requests N] [--concurrency C] [--rounds R]
[--cores split|shared]``

Starts the real vLLM engine (CPU build) with the tiny seeded Qwen2 and sends identical chat
completions (the body okaflow builds, structured output included) through:

- raw ``httpx.Client.post`` + ``response.json()`` vs :meth:`OpenAIBackend.understand`, one at a time;
- raw ``httpx.AsyncClient.post`` vs :meth:`AsyncOpenAIBackend.aunderstand`, ``C`` in flight.

Rounds alternate which side goes first, so drift hits both. Printed: requests/s (best round), the
ratio okaflow/raw of the best rounds and the median of per-round ratios (target ≥ 0.95), and the
client process's CPU time per request (the client's own cost).

``--cores split`` (the default) runs the server on the first half of this machine's CPUs and the
client on the others, as deployed: a GPU host answers, other hosts send, and a client's CPU is not
taken from the engine. ``--cores shared`` puts both on every CPU; the client's extra CPU then slows
the engine itself, and the wall-clock ratios carry the engine's noise (±0.1 here on two CPUs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from _engine import cpu_halves, serve
from pydantic import BaseModel

from okaflow.model_backend import (
    AsyncOpenAIBackend,
    ChatMessage,
    OpenAIBackend,
    UnderstandRequest,
    json_schema_for,
)

MODEL = "tiny-qwen2"


class Answer(BaseModel):
    stable: bool


def requests(n: int) -> list[UnderstandRequest]:
    return [
        UnderstandRequest(
            purpose="bench",
            messages=[ChatMessage(role="user", content=f"Is lesion {i} stable?")],
            response_schema=json_schema_for(Answer),
            schema_name="Answer",
            max_tokens=16,
            seed=i,
        )
        for i in range(n)
    ]


@dataclass
class Tally:
    """Requests/s and this process's CPU ms per request, one entry per round."""

    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def add(self, n: int, wall: float, cpu: float) -> None:
        self.rates.append(n / wall)
        self.cpu_ms.append(cpu * 1000 / n)


def timed(tally: Tally, fn: Callable[[], None], n: int) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    tally.add(n, time.perf_counter() - wall, time.process_time() - cpu)


async def atimed(tally: Tally, fn: Callable[[], Awaitable[None]], n: int) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    await fn()
    tally.add(n, time.perf_counter() - wall, time.process_time() - cpu)


def pairs(raw: Tally, oka: Tally) -> str:
    """Best-of ratio, the median of per-round ratios, and client CPU per request."""
    per_round = statistics.median(o / r for o, r in zip(oka.rates, raw.rates, strict=True))
    return (
        f"{max(raw.rates):>10.1f}{max(oka.rates):>10.1f}{max(oka.rates) / max(raw.rates):>8.3f}{per_round:>8.3f}"
        f"{statistics.median(raw.cpu_ms):>9.2f}{statistics.median(oka.cpu_ms):>9.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--cores", choices=["split", "shared"], default="split")
    args = parser.parse_args()
    reqs = requests(args.requests)
    halves = cpu_halves() if args.cores == "split" else None
    if halves:
        layout = f"server on CPUs {halves[0]}, client on {halves[1]}"
    else:
        layout = f"server and client on CPUs {sorted(os.sched_getaffinity(0))}"

    with serve("qwen2-text", MODEL, cpus=halves[0] if halves else None) as server:
        if halves:
            os.sched_setaffinity(0, halves[1])
        url = f"{server.base_url}/chat/completions"
        sync_backend = OpenAIBackend(base_url=server.base_url, model=MODEL)
        bodies = [sync_backend.build_body(r) for r in reqs]
        raw_client = httpx.Client(timeout=60)

        def raw_sync() -> None:
            for body in bodies:
                response = raw_client.post(url, json=body)
                response.raise_for_status()
                response.json()

        def okaflow_sync() -> None:
            for r in reqs:
                sync_backend.understand(r)

        async def async_rounds() -> tuple[Tally, Tally]:
            limit = asyncio.Semaphore(args.concurrency)
            limits = httpx.Limits(max_connections=args.concurrency)
            async with (
                httpx.AsyncClient(timeout=60, limits=limits) as raw,
                AsyncOpenAIBackend(
                    base_url=server.base_url, model=MODEL, http_client=httpx.AsyncClient(timeout=60, limits=limits)
                ) as backend,
            ):

                async def one_raw(body: dict[str, object]) -> None:
                    async with limit:
                        response = await raw.post(url, json=body)
                        response.raise_for_status()
                        response.json()

                async def one_okaflow(r: UnderstandRequest) -> None:
                    async with limit:
                        await backend.aunderstand(r)

                async def raw_all() -> None:
                    await asyncio.gather(*(one_raw(b) for b in bodies))

                async def okaflow_all() -> None:
                    await asyncio.gather(*(one_okaflow(r) for r in reqs))

                await raw_all()  # warm-up: connections, the engine's grammar cache
                await okaflow_all()
                raw_t, oka_t = Tally(), Tally()
                for i in range(args.rounds):  # alternate who goes first, so drift hits both
                    first, second = ((raw_t, raw_all), (oka_t, okaflow_all))[:: 1 if i % 2 == 0 else -1]
                    await atimed(*first, len(reqs))
                    await atimed(*second, len(reqs))
                return raw_t, oka_t

        raw_sync()  # warm-up
        okaflow_sync()
        raw_s, oka_s = Tally(), Tally()
        for i in range(args.rounds):
            first, second = ((raw_s, raw_sync), (oka_s, okaflow_sync))[:: 1 if i % 2 == 0 else -1]
            timed(*first, len(reqs))
            timed(*second, len(reqs))
        raw_a, oka_a = asyncio.run(async_rounds())
        raw_client.close()
        sync_backend.close()

    print(f"vLLM {MODEL}, {len(reqs)} requests per round (json_schema, max_tokens 16), {args.rounds} rounds; {layout}")
    print(f"{'':<26}{'req/s (best round)':^28}{'ratio':^16}{'client CPU ms/req':^18}")
    print(f"{'path':<26}{'raw':>10}{'okaflow':>10}{'best':>8}{'median':>8}{'raw':>9}{'okaflow':>9}")
    print(f"{'sync, one at a time':<26}{pairs(raw_s, oka_s)}")
    print(f"{f'async, {args.concurrency} in flight':<26}{pairs(raw_a, oka_a)}")
    print("target: ratio ≥ 0.95")


if __name__ == "__main__":
    main()
