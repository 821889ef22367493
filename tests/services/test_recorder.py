"""The ``Recorder``: save first, then the log line, the verdict log and the live event, then
the reply; a sink that fails costs a 451 and nothing else."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sinkd.services.recorder import Recorder, format_reply
from tests.support.recorder import Sink, verdicts
from tests.support.smtp import GTUBE_MESSAGE, message


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def write(self, message_id: str, data: dict[str, Any]) -> None:
        self.lines.append((message_id, data))


class Events:
    subscribers = 1

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))


async def test_a_commit_saves_logs_writes_the_verdict_log_publishes_and_replies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink, lines, events = Sink(), Lines(), Events()
    recorder = Recorder(sink, verdict_log=lines, events=events)
    found = await verdicts(message(), "bob@corp.example")
    caplog.set_level(logging.INFO, logger="sinkd.smtp")
    committed = await recorder.commit(found, message(), transaction_id="T1")
    assert committed.stored
    (record,) = sink.saved
    assert (record.transaction_id, record.raw) == ("T1", message())
    assert lines.lines == [(record.id, record.to_json())]
    assert events.events == [("verdict", record.to_json())]
    assert any(f"verdict id={record.id}" in r.getMessage() for r in caplog.records)
    assert format_reply(committed.reply).endswith(f"queued as {record.id}")


async def test_a_failing_sink_is_answered_451_and_nothing_is_logged_or_published() -> None:
    lines, events = Lines(), Events()
    recorder = Recorder(Sink(fail=True), verdict_log=lines, events=events)
    committed = await recorder.commit(await verdicts(GTUBE_MESSAGE, "bob@corp.example"), b"x")
    assert not committed.stored and isinstance(committed.error, OSError)
    assert format_reply(committed.reply) == "451 4.3.5 Unable to process mail; try again later"
    assert (lines.lines, events.events) == ([], [])


async def test_only_verdicts_judged_at_data_carry_the_bytes() -> None:
    found = await verdicts(message(), "bob@corp.example")
    (record,) = Recorder.records(found, message())
    assert record.raw == message()
    assert Recorder.records(found, None)[0].raw is None


async def test_the_verdict_line_is_one_info_record_of_sinkd_smtp_with_its_json_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    found = await verdicts(message(), "bob@corp.example")
    caplog.set_level(logging.INFO, logger="sinkd.smtp")
    committed = await Recorder(Sink()).commit(found, message(), transaction_id="T1")
    (record,) = committed.records
    (line,) = [r for r in caplog.records if r.name == "sinkd.smtp"]
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(f"verdict id={record.id} profile=typical-corporate ")
    assert line.getMessage().endswith(f"reply={format_reply(committed.reply)!r}")
    fields = line.sinkd
    assert fields["id"] == record.id and fields["rcpt_to"] == ["bob@corp.example"]
    assert fields["size"] == len(message()) and fields["reply"] == format_reply(committed.reply)
    # Made without Logger.info's stack walk, it still names where it comes from.
    assert (line.module, line.funcName) == ("recorder", "log_verdict")


async def test_no_verdict_line_is_made_when_its_level_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    found = await verdicts(message(), "bob@corp.example")
    caplog.set_level(logging.WARNING, logger="sinkd.smtp")
    await Recorder(Sink()).commit(found, message(), transaction_id="T1")
    assert [r for r in caplog.records if r.name == "sinkd.smtp"] == []
