"""The hosted ControlBus log's long polls: on the event loop, woken by appends from any
thread, and answered at once when the server stops."""

from __future__ import annotations

import asyncio
import threading

from qmtl.services.controlbus import FREEZE, Envelope, EventLog

#: Waits that only end a test that would otherwise hang; never reached when it passes.
HANG_GUARD = 60.0
#: A poll that would outlast any test run: only an append or end_polls ends it.
FOREVER = 3600.0


def event() -> Envelope:
    return Envelope(type=FREEZE, source="x", subject="w", data={"world_id": "w", "run_id": "r"})


def test_a_poll_waits_without_a_thread_and_wakes_on_an_append_from_another() -> None:
    log = EventLog()
    sent = event()

    async def main() -> tuple[int, list[Envelope], int]:
        threads = threading.active_count()
        poll = asyncio.create_task(log.poll(0, wait=FOREVER))
        await asyncio.sleep(0)  # the poll is now waiting
        waiting_threads = threading.active_count()
        writer = threading.Thread(target=log.append, args=(sent,))
        writer.start()
        last, events = await asyncio.wait_for(poll, HANG_GUARD)
        writer.join()
        return last, events, waiting_threads - threads

    last, events, extra_threads = asyncio.run(main())
    assert (last, [e.id for e in events], extra_threads) == (1, [sent.id], 0)


def test_end_polls_answers_the_waiting_poll_and_every_later_one() -> None:
    log = EventLog()
    log.append(event())

    async def main() -> list[tuple[int, int]]:
        poll = asyncio.create_task(log.poll(1, wait=FOREVER))
        await asyncio.sleep(0)
        log.end_polls()
        first = await asyncio.wait_for(poll, HANG_GUARD)
        later = await asyncio.wait_for(log.poll(1, wait=FOREVER), HANG_GUARD)
        return [(last, len(events)) for last, events in (first, later)]

    assert asyncio.run(main()) == [(1, 0), (1, 0)]


def test_a_reader_ahead_of_a_restarted_log_is_given_its_head_to_start_over() -> None:
    """A WorldService restart starts the log at 0; a Gateway still at 40 must not wait
    for sequence 41 to see new events."""
    log = EventLog()
    log.append(event())

    async def main() -> int:
        last, _events = await log.poll(40, wait=0.01)
        return last

    assert asyncio.run(main()) == 1
    assert log.read(40)[0] == 1
