"""Oldest run first: concurrent runs in one event loop take turns at the CPU, by the runs' age.

Loading a case, rendering its images and writing its report are CPU work, which :func:`okaflow.arun`
does in worker threads so the event loop keeps serving model calls. Left to themselves, N runs started
together move in lockstep: every run loads its case before the first renders its images, so the first
model request leaves only after N cases' preparation while the model server idles, and every report
then waits behind the others. Here a run computes only while it holds one of a few slots, and gives its
slot up while it waits on another server (the model, an image generator, a sink); a freed slot goes to
the oldest run that wants one. A run, once started, goes on to its model call and, when the answer is
back, on to its report, ahead of runs that started after it: requests leave one case's work apart, the
server has work while the agent prepares the next case, and the first report is out after one case's
time instead of N.

That is what a model server of its own (a GPU host) wants. A CPU engine on the agent's own cores
(vLLM-CPU beside okaflow) wants the opposite: whatever the agent computes while the engine runs slows
the engine's OpenMP threads sharply, so there ``OKAFLOW_CPU_SLOTS=0`` lets every run compute at once,
the runs move in lockstep, and agent and engine take the CPU in turns instead.

Work a run will need later but can do before it is needed (a report's lab-trend figures, which depend
on the record and not on the model's answer) is done *ahead*, while the run waits on the model: it asks
for a slot after every run's steps, and gets one only while no step is waiting for one (once started,
it is not interrupted). Runs waiting on a server leave the CPU idle, and the work ahead fills that time
instead of adding to the queue of reports when the answers come back together.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import weakref
from collections.abc import AsyncIterator
from types import TracebackType

from okaflow._constants import ENV_CPU_SLOTS
from okaflow._errors import ConfigurationError

__all__ = ["RunTurn", "Turns", "configured_slots", "run_turn"]

# Python code holds the GIL, so more than a couple of CPU steps at once only interleave them again;
# a second slot lets one step run in C without the GIL (zlib, numpy, Pillow) while another runs Python.
_DEFAULT_SLOTS = max(1, min(2, os.cpu_count() or 1))
_RANKS = itertools.count()
_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turns] = weakref.WeakKeyDictionary()


class Turns:
    """Slots for CPU-bound steps, handed to the waiting step of the oldest run (lowest rank) first, and to
    work done ahead only when no step waits."""

    def __init__(self, slots: int = _DEFAULT_SLOTS) -> None:
        if slots < 0:
            raise ValueError(f"slots must be 0 (no turns) or more, got {slots}")
        self._unlimited = slots == 0
        self._free = slots
        # (0 for a run's step or 1 for work ahead, rank, arrival, future): the heap's least is served first.
        self._waiting: list[tuple[int, int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # equal ranks (one run's parallel steps) keep their arrival order

    @property
    def unlimited(self) -> bool:
        """No turns (0 slots): every step computes at once."""
        return self._unlimited

    async def acquire(self, rank: int, *, ahead: bool = False) -> None:
        """Wait for a slot; a run of lower ``rank`` that is waiting too gets one first.

        ``ahead``: for work done ahead of need, which gets a slot only when no run's step is waiting.
        """
        if self._unlimited:
            return
        if self._free and not self._waiting:
            self._free -= 1
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (int(ahead), rank, next(self._order), handed))
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self.release()  # the slot came just as the waiter was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give the slot to the oldest waiting run's step, else to the oldest run's work ahead, else back to
        the free slots."""
        if self._unlimited:
            return
        while self._waiting:
            handed = heapq.heappop(self._waiting)[-1]
            if not handed.done():  # a cancelled waiter is skipped
                handed.set_result(None)
                return
        self._free += 1


class RunTurn:
    """One run's place in its event loop's :class:`Turns`.

    ``async with turn:`` holds a slot for the run's work; ``async with turn.away():`` inside it gives
    the slot up while the run waits on another server, and takes one again (oldest run first) after.
    """

    def __init__(self, turns: Turns, rank: int) -> None:
        self.turns = turns
        self.rank = rank
        self._held = False

    async def __aenter__(self) -> None:
        await self.turns.acquire(self.rank)
        self._held = True

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._let_go()

    @contextlib.asynccontextmanager
    async def away(self) -> AsyncIterator[None]:
        """Without a slot for the block: the run waits on a server, and other runs compute meanwhile."""
        self._let_go()
        try:
            yield
        finally:
            await self.turns.acquire(self.rank)  # cancelled here, the run holds no slot and gives none back
            self._held = True

    @contextlib.asynccontextmanager
    async def ahead(self) -> AsyncIterator[None]:
        """A slot of its own for work done ahead of need, granted only while no run's step waits for one."""
        await self.turns.acquire(self.rank, ahead=True)
        try:
            yield
        finally:
            self.turns.release()

    def _let_go(self) -> None:
        if self._held:
            self._held = False
            self.turns.release()


def run_turn() -> RunTurn:
    """A new run's turn in the running event loop's turns, ranked after every run started before it."""
    loop = asyncio.get_running_loop()
    turns = _BY_LOOP.get(loop)
    if turns is None:
        turns = _BY_LOOP[loop] = Turns(configured_slots())
    return RunTurn(turns, next(_RANKS))


def configured_slots() -> int:
    """``OKAFLOW_CPU_SLOTS`` (0: no turns), else 2 (1 on a one-CPU machine).

    Raises:
        ConfigurationError: the variable is set to something other than a whole number of 0 or more.
    """
    raw = os.environ.get(ENV_CPU_SLOTS, "").strip()
    if not raw:
        return _DEFAULT_SLOTS
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigurationError(
            f"{ENV_CPU_SLOTS} must be a whole number of 0 or more, got {raw!r}",
            hint=f"unset it for the default ({_DEFAULT_SLOTS}), or 0 when the model server runs on okaflow's cores",
        )
    return int(raw)
