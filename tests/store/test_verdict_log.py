"""``sinkd serve --verdict-log PATH``: one JSON line per stored verdict, over real SMTP and
HTTP; a log that cannot be written loses no message and stops nothing."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest

from sinkd.cli import build_parser, main
from sinkd.server.runtime import Sinkd
from sinkd.store import Query
from sinkd.store.verdict_log import VerdictLog
from tests.conftest import StartServer
from tests.support.smtp import GTUBE_MESSAGE, SPAMMY_MESSAGE, TIMEOUT, aio_client, message
from tests.support.web import base_url


async def send(app: Sinkd, raw: bytes, *rcpts: str) -> str:
    """Send over SMTP; the reply line to DATA (a refusal included)."""
    async with aio_client(app) as smtp:
        try:
            _, reply = await smtp.sendmail("alice@sender.example", list(rcpts), raw)
        except aiosmtplib.SMTPDataError as exc:
            return f"{exc.code} {exc.message}"
        return reply


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_each_verdict_is_one_json_line_equal_to_the_api_message(
    start_server: StartServer, tmp_path: Path
) -> None:
    log_path = tmp_path / "artifacts" / "verdicts.jsonl"  # a missing directory is made
    app = await start_server(http=True, verdict_log=log_path)
    await send(app, message(), "bob@corp.example")
    await send(app, SPAMMY_MESSAGE, "dave@corp.example")
    assert (await send(app, GTUBE_MESSAGE, "eve@corp.example")).startswith("554")
    logged = lines(log_path)
    assert [entry["verdict"] for entry in logged] == ["accept", "quarantine", "reject"]
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        for entry in logged:
            response = await http.get(f"/api/v1/messages/{entry['id']}")
            assert response.status_code == 200
            assert entry == response.json()


async def test_the_line_is_in_the_file_when_the_client_gets_its_reply(
    start_server: StartServer, tmp_path: Path
) -> None:
    log_path = tmp_path / "verdicts.jsonl"
    app = await start_server(verdict_log=log_path)
    for expected in range(1, 4):
        reply = await send(app, message(f"number {expected}"), "bob@corp.example")
        # No waiting: the line is written after the commit and before the reply is sent.
        logged = lines(log_path)
        assert len(logged) == expected
        assert reply.endswith(logged[-1]["id"])
        assert logged[-1]["subject"] == f"number {expected}"


async def test_routed_recipients_give_one_line_per_profile_sharing_a_transaction(
    start_server: StartServer, tmp_path: Path
) -> None:
    log_path = tmp_path / "verdicts.jsonl"
    app = await start_server(routes={"finance.example": "strict-finance"}, verdict_log=log_path)
    await send(app, message(), "bob@corp.example", "carol@finance.example")
    first, second = lines(log_path)
    assert (first["profile"], second["profile"]) == ("typical-corporate", "strict-finance")
    assert first["transaction_id"] == second["transaction_id"]


async def test_a_restarted_server_appends_to_the_existing_log(
    start_server: StartServer, tmp_path: Path
) -> None:
    log_path = tmp_path / "verdicts.jsonl"
    first = await start_server(verdict_log=log_path)
    await send(first, message("before"), "bob@corp.example")
    await first.stop()
    second = await start_server(verdict_log=log_path)
    await send(second, message("after"), "bob@corp.example")
    assert [entry["subject"] for entry in lines(log_path)] == ["before", "after"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
async def test_a_log_that_cannot_be_written_loses_no_message_and_the_server_goes_on(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # /dev/full takes the open and fails every write with ENOSPC, as a full disk does.
    app = await start_server(verdict_log=Path("/dev/full"))
    with caplog.at_level(logging.ERROR, logger="sinkd.store.verdict_log"):
        first = await send(app, message("one"), "bob@corp.example")
        second = await send(app, message("two"), "bob@corp.example")
    assert first.startswith("2.0.0 Ok: queued as") and second.startswith("2.0.0 Ok: queued as")
    assert app.store is not None
    stored = await app.store.list(Query(limit=10))
    assert sorted(m.data["subject"] for m in stored) == ["one", "two"]
    errors = [r.getMessage() for r in caplog.records if r.name == "sinkd.store.verdict_log"]
    assert len(errors) == 2
    for record_id, error in zip(sorted(m.id for m in stored), sorted(errors), strict=True):
        assert error.startswith(f"verdict log /dev/full: could not write verdict {record_id}")
        assert error.endswith("it is stored all the same")
    assert app.verdict_log is not None and app.verdict_log.failures == 2


def test_serve_with_a_log_path_that_cannot_be_opened_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "verdicts.jsonl"
    code = main(
        ["serve", "--port", "0", "--no-http", "--db", str(tmp_path / "s.db"),
         "--verdict-log", str(target)]
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.startswith(f"sinkd: --verdict-log {target}: cannot open:")


def test_sinkd_verdict_log_in_the_environment_sets_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SINKD_VERDICT_LOG", "/data/verdicts.jsonl")
    assert build_parser().parse_args(["serve"]).verdict_log == Path("/data/verdicts.jsonl")
    monkeypatch.setenv("SINKD_VERDICT_LOG", "")
    assert build_parser().parse_args(["serve"]).verdict_log is None


def test_a_text_with_a_lone_surrogate_is_written_as_its_json_escape(tmp_path: Path) -> None:
    # A filter may keep an octet that is no UTF-8 as a surrogate escape; the line is still
    # written (this write "never raises") and still reads back as the same JSON.
    log = VerdictLog(tmp_path / "verdicts.jsonl")
    log.write("m1", {"id": "m1", "reason": "matched \udc93free"})
    log.close()
    assert log.failures == 0
    assert lines(tmp_path / "verdicts.jsonl") == [{"id": "m1", "reason": "matched \udc93free"}]
