"""okaflow._turns: CPU steps of concurrent runs take turns, oldest run first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from okaflow._errors import ConfigurationError
from okaflow._turns import RunTurn, Turns, configured_slots, run_turn

from .model_backend.conftest import run_async

T = TypeVar("T")


async def _one_slot_taken(order: list[object]) -> tuple[Turns, Callable[..., Awaitable[None]]]:
    """Turns of one slot, held by a step of run 0, and a step that notes its name (or rank) when it runs."""
    turns = Turns(slots=1)
    await turns.acquire(0)

    async def step(rank: int, name: object = None) -> None:
        async with RunTurn(turns, rank):
            order.append(rank if name is None else name)

    return turns, step


def test_a_freed_slot_goes_to_the_oldest_waiting_run_not_the_first_to_ask() -> None:
    async def scenario() -> list[object]:
        order: list[object] = []
        turns, step = await _one_slot_taken(order)

        # Runs 5, 3, 4 and 1 ask in that order while the slot is taken.
        waiting = [asyncio.create_task(step(rank)) for rank in (5, 3, 4, 1)]
        await asyncio.sleep(0)
        turns.release()
        await asyncio.gather(*waiting)
        return order

    assert run_async(scenario) == [1, 3, 4, 5]


def test_steps_of_one_run_keep_their_order() -> None:
    async def scenario() -> list[object]:
        order: list[object] = []
        turns, step = await _one_slot_taken(order)
        waiting = [asyncio.create_task(step(2, name)) for name in ("first", "second", "third")]
        await asyncio.sleep(0)
        turns.release()
        await asyncio.gather(*waiting)
        return order

    assert run_async(scenario) == ["first", "second", "third"]


def test_slots_run_steps_side_by_side_up_to_their_number() -> None:
    async def scenario() -> int:
        turns, busy, most = Turns(slots=2), 0, 0

        async def step(rank: int) -> None:
            nonlocal busy, most
            async with RunTurn(turns, rank):
                busy += 1
                most = max(most, busy)
                await asyncio.sleep(0.01)
                busy -= 1

        await asyncio.gather(*(step(rank) for rank in range(6)))
        return most

    assert run_async(scenario) == 2


def test_a_cancelled_waiter_loses_its_place_and_keeps_no_slot() -> None:
    async def scenario() -> list[object]:
        order: list[object] = []
        turns, step = await _one_slot_taken(order)

        gone, later = asyncio.create_task(step(1)), asyncio.create_task(step(2))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        turns.release()
        await later
        # Both slots' worth of work is free again: a new step runs at once.
        await asyncio.wait_for(turns.acquire(9), timeout=1)
        return order

    assert run_async(scenario) == [2]


def test_a_waiter_cancelled_just_as_the_slot_reached_it_passes_the_slot_on() -> None:
    async def scenario() -> list[object]:
        order: list[object] = []
        turns, step = await _one_slot_taken(order)

        unlucky, next_in_line = asyncio.create_task(step(1)), asyncio.create_task(step(2))
        await asyncio.sleep(0)
        turns.release()  # hands the slot to run 1, whose task has not resumed yet...
        unlucky.cancel()  # ...and is cancelled before it does
        await asyncio.wait_for(next_in_line, timeout=1)
        with pytest.raises(asyncio.CancelledError):
            await unlucky
        return order

    assert run_async(scenario) == [2]


def test_runs_are_ranked_by_start_within_their_event_loop() -> None:
    async def scenario() -> tuple[RunTurn, RunTurn]:
        return run_turn(), run_turn()

    first, second = run_async(scenario)
    assert first.rank < second.rank
    assert first.turns is second.turns
    (other, _) = run_async(scenario)
    assert other.turns is not first.turns  # asyncio futures belong to one loop: each loop has its own turns


def test_negative_slots_are_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(no turns\\) or more"):
        Turns(slots=-1)


def test_zero_slots_means_no_turns_every_step_runs_at_once() -> None:
    async def scenario() -> None:
        turns = Turns(slots=0)
        await asyncio.wait_for(asyncio.gather(*(turns.acquire(rank) for rank in range(50))), timeout=1)
        turns.release()  # nothing to give back, nothing to break

    run_async(scenario)


@pytest.mark.parametrize(("value", "slots"), [("", 2), ("0", 0), (" 3 ", 3)])
def test_the_environment_sets_the_slots(monkeypatch: pytest.MonkeyPatch, value: str, slots: int) -> None:
    monkeypatch.setattr("okaflow._turns._DEFAULT_SLOTS", 2)
    monkeypatch.setenv("OKAFLOW_CPU_SLOTS", value)
    assert configured_slots() == slots


@pytest.mark.parametrize("value", ["-1", "two", "1.5", "\u00b2"])
def test_a_malformed_slot_count_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OKAFLOW_CPU_SLOTS", value)
    with pytest.raises(ConfigurationError, match="OKAFLOW_CPU_SLOTS must be a whole number") as info:
        configured_slots()
    assert "model server runs on okaflow's cores" in str(info.value.hint)


def test_a_new_event_loop_reads_the_slots_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> bool:
        turn = run_turn()
        await asyncio.wait_for(asyncio.gather(*(turn.turns.acquire(rank) for rank in range(10))), timeout=1)
        return True

    monkeypatch.setenv("OKAFLOW_CPU_SLOTS", "0")
    assert run_async(scenario)


def test_a_run_waiting_on_a_server_lets_others_compute_and_then_comes_first() -> None:
    async def scenario() -> list[str]:
        turns, order = Turns(slots=1), []
        old, young = RunTurn(turns, 0), RunTurn(turns, 1)
        answer = asyncio.Event()

        async def old_run() -> None:
            async with old:
                order.append("old prepares")
                async with old.away():
                    await answer.wait()  # the model call
                order.append("old reports")

        async def young_run() -> None:
            async with young:
                order.append("young prepares")
                answer.set()  # the old run's answer arrives while the young one computes
                await asyncio.sleep(0)
                order.append("young still has the slot")
                async with young.away():
                    await asyncio.sleep(0.01)
                order.append("young reports")

        await asyncio.gather(old_run(), young_run())
        return order

    assert run_async(scenario) == [
        "old prepares",
        "young prepares",
        "young still has the slot",
        "old reports",
        "young reports",
    ]


def test_cancelled_while_taking_its_slot_back_a_run_gives_back_nothing() -> None:
    async def scenario() -> None:
        turns = Turns(slots=1)
        blocker, run = RunTurn(turns, 0), RunTurn(turns, 1)

        async def waits_then_is_cancelled() -> None:
            async with run, run.away():
                await blocker.__aenter__()  # another run takes the slot meanwhile

        task = asyncio.create_task(waits_then_is_cancelled())
        await asyncio.sleep(0.01)  # run is now waiting to take its slot back
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await blocker.__aexit__(None, None, None)
        await asyncio.wait_for(turns.acquire(5), timeout=1)  # the one slot is free again...
        waiting = asyncio.create_task(turns.acquire(6))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # ...and there is only one: the cancelled run released nothing twice
        waiting.cancel()

    run_async(scenario)


def test_work_ahead_waits_behind_every_run_step_even_younger_ones() -> None:
    async def scenario() -> list[object]:
        order: list[object] = []
        turns, step = await _one_slot_taken(order)

        async def ahead(rank: int) -> None:
            async with RunTurn(turns, rank).ahead():
                order.append(f"ahead {rank}")

        # The oldest run's work ahead asks first, then younger runs' steps.
        waiting = [asyncio.create_task(ahead(0)), *(asyncio.create_task(step(rank)) for rank in (7, 8))]
        await asyncio.sleep(0)
        turns.release()
        await asyncio.gather(*waiting)
        return order

    assert run_async(scenario) == [7, 8, "ahead 0"]


def test_work_ahead_takes_a_free_slot_at_once_and_gives_it_back() -> None:
    async def scenario() -> bool:
        turns = Turns(slots=1)
        async with RunTurn(turns, 3).ahead():
            taken = asyncio.create_task(turns.acquire(0))
            await asyncio.sleep(0.01)
            assert not taken.done()  # the one slot is the work ahead's while it runs
        await asyncio.wait_for(taken, timeout=1)
        return True

    assert run_async(scenario)
