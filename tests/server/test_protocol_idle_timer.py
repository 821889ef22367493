"""``SinkdSMTP``'s idle timeout: one timer per connection that moves with each command instead
of a new one per command, closing the connection when aiosmtpd's own timer would have.

The protocol runs on a fake clock the test sets, so no test waits for real time to pass."""

from __future__ import annotations

from collections.abc import Callable

from aiosmtpd.smtp import Session

from sinkd.server.handler import SinkHandler
from sinkd.server.options import ServerOptions
from sinkd.server.protocol import SinkdSMTP, build_protocol
from sinkd.services.judge import Judge
from sinkd.services.recorder import Recorder

TIMEOUT = 300.0


class Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self._when, self.callback, self._cancelled = when, callback, False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class Clock:
    """What the idle timer uses of the event loop, with the time set by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        self.timers.append(Timer(when, callback))
        return self.timers[-1]

    def live(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled()]

    def fire(self) -> None:
        """Run the one live timer at its time (as the loop would), once."""
        (timer,) = self.live()
        self.now = max(self.now, timer.when())
        timer.cancel()  # spent: a fired handle is never due again
        timer.callback()


class Transport:
    closed = False

    def close(self) -> None:
        self.closed = True


def idle_protocol() -> tuple[SinkdSMTP, Clock, Transport]:
    options = ServerOptions(timeout=TIMEOUT)
    handler = SinkHandler(Judge.__new__(Judge), Recorder.__new__(Recorder), options)
    protocol = build_protocol(handler, options).clone()
    clock, transport = Clock(), Transport()
    protocol.loop = clock  # type: ignore[assignment]
    protocol.session = Session(clock)  # type: ignore[arg-type]
    protocol.transport = transport  # type: ignore[assignment]
    return protocol, clock, transport


async def test_commands_move_one_idle_timer_instead_of_arming_one_each() -> None:
    protocol, clock, _ = idle_protocol()
    for _ in range(5):
        protocol._reset_timeout()
        clock.now += 1.0
    assert len(clock.timers) == 1
    assert protocol._idle_deadline == clock.now - 1.0 + TIMEOUT


async def test_a_timer_that_fires_before_the_deadline_waits_out_the_rest_then_closes() -> None:
    protocol, clock, transport = idle_protocol()
    protocol._reset_timeout()
    clock.now += 100.0
    protocol._reset_timeout()  # a command 100 s in: the connection may idle until 400 s

    clock.fire()  # at 300 s: not idle long enough
    assert not transport.closed
    assert [t.when() for t in clock.live()] == [protocol._idle_deadline]

    clock.fire()  # at 400 s
    assert transport.closed


async def test_a_connection_idle_for_the_whole_timeout_is_closed_at_once() -> None:
    protocol, clock, transport = idle_protocol()
    protocol._reset_timeout()
    clock.fire()
    assert transport.closed


async def test_a_shorter_timeout_than_the_armed_one_rearms_the_timer_earlier() -> None:
    # aiosmtpd arms the regular timeout at connect, then PROXY's shorter one.
    protocol, clock, transport = idle_protocol()
    protocol._reset_timeout()
    protocol._reset_timeout(10.0)
    assert [t.when() for t in clock.live()] == [clock.now + 10.0]
    clock.fire()
    assert transport.closed
