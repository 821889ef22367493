"""``sinkd serve`` as a real process: readiness line, durability across kill -9, clean shutdown
on signals, JSON logs, environment variables and start-up errors.

Each server is ``python -m sinkd serve --port 0`` with every ``SINKD_*`` variable cleared and
``SINKD_NO_HTTP=1`` (``tests/web`` tests the HTTP API); tests wait for its ``sinkd ready
smtp=HOST:PORT`` line (never sleep) and read the store back through the ``sinkd messages``
command.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiosmtplib
import pytest

from sinkd.core.matching import GTUBE
from tests.support.servers import (
    TIMEOUT,
    StartServe,
    assert_store_intact,
    clean_env,
    message,
    run_sinkd,
    send,
    writer_pid,
)

# --- durability ------------------------------------------------------------------------------


async def test_every_acknowledged_message_survives_kill_9(
    serve: StartServe, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    served = await serve("--db", str(db), "--profile", "no-filter")
    sent = {n: message(n) for n in range(50)}
    # 10 messages one after another on one connection, then 40 over 8 concurrent connections.
    id_of = dict(zip(range(10), await send(served, *(sent[n] for n in range(10))), strict=True))
    groups = [range(10 + k, 50, 8) for k in range(8)]
    results = await asyncio.gather(*(send(served, *(sent[n] for n in g)) for g in groups))
    for group, group_ids in zip(groups, results, strict=True):
        id_of.update(zip(group, group_ids, strict=True))
    ids = list(id_of.values())
    assert len(set(ids)) == 50

    served.process.kill()  # SIGKILL: no shutdown code runs at all
    assert await served.wait() == -signal.SIGKILL

    again = await serve("--db", str(db), "--profile", "no-filter")
    code, out, err = await run_sinkd(
        "messages", "list", "--db", str(db), "--json", "--limit", "500"
    )
    assert code == 0, err
    listed = {row["id"]: row for row in json.loads(out)}
    assert set(ids) <= set(listed)
    assert len(listed) == 50
    assert all(row["verdict"] == "accept" for row in listed.values())

    chosen = id_of[17]
    code, out, err = await run_sinkd("messages", "show", chosen, "--db", str(db), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["id"] == chosen
    assert shown["subject"] == "durable 17"
    assert shown["size"] == len(sent[17])
    code, out, err = await run_sinkd("messages", "show", chosen, "--db", str(db), "--raw")
    assert code == 0, err
    # What the client handed over, after SMTP's dot-stuffing was undone.
    assert out == sent[17]
    assert out.split(b"\r\n\r\n", 1)[1] == (
        b"Message number 17.\r\n.A line that starts with a dot.\r\n..and one with two.\r\n"
    )
    # The restarted server goes on storing.
    (new_id,) = await send(again, message(99))
    assert new_id not in listed
    assert await again.stop() == 0
    assert_store_intact(db, [*ids, new_id])


# --- shutdown ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_the_server_cleanly_with_exit_code_0(
    serve: StartServe, tmp_path: Path, signum: int
) -> None:
    db = tmp_path / "store.db"
    served = await serve("--db", str(db))
    ids = await send(served, message(1), message(2))
    assert await served.stop(signum) == 0
    assert not [line for line in served.stderr if "Traceback" in line], served.stderr
    assert_store_intact(db, ids)
    # The store reads back through the command line, holding exactly what was acknowledged.
    code, out, err = await run_sinkd("messages", "list", "--db", str(db), "--json")
    assert code == 0, err
    assert {row["id"] for row in json.loads(out)} == set(ids)


# --- logging -----------------------------------------------------------------------------------


async def test_json_log_format_writes_one_json_object_per_verdict_to_stderr(
    serve: StartServe, tmp_path: Path
) -> None:
    served = await serve("--db", str(tmp_path / "store.db"), "--log-format", "json")
    accepted = await send(served, message(1))
    gtube = message(2, "GTUBE:\r\n" + GTUBE.decode() + "\r\n")
    async with aiosmtplib.SMTP(
        hostname=served.host, port=served.port, start_tls=False, timeout=TIMEOUT
    ) as smtp:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.sendmail("alice@sender.example", ["bob@corp.example"], gtube)
    assert refused.value.code == 554
    assert await served.stop() == 0

    objects = [json.loads(line) for line in served.stderr if line.strip()]  # every line is JSON
    assert all(isinstance(o, dict) for o in objects)
    verdicts = [o for o in objects if o.get("event") == "verdict"]
    assert len(verdicts) == 2, served.stderr
    first, second = verdicts
    assert first["id"] == accepted[0]
    # Offline DNS has data for no name: SPF and the blocklist are not judged, DKIM and DMARC
    # find nothing to check.
    assert (first["verdict"], first["codes"]) == (
        "accept",
        ["SPF_NONE", "DNSBL_NOT_JUDGED", "DKIM_NONE", "DMARC_NONE"],
    )
    assert second["verdict"] == "reject"
    assert "CONTENT_GTUBE" in second["codes"]
    assert second["reply"] == "554 5.7.1 Gtube pattern"
    code, out, err = await run_sinkd(
        "messages", "list", "--db", str(tmp_path / "store.db"), "--json"
    )
    assert code == 0, err
    assert {row["id"] for row in json.loads(out)} == {first["id"], second["id"]}


# --- configuration -----------------------------------------------------------------------------


async def test_sinkd_port_and_sinkd_profile_environment_variables_are_honoured(
    serve: StartServe, tmp_path: Path
) -> None:
    db = tmp_path / "env.db"
    env = clean_env(SINKD_PORT="0", SINKD_PROFILE="no-filter", SINKD_DB=str(db))
    served = await serve(env=env, port=False)
    assert served.port not in (0, 2525)
    # GTUBE is rejected by the default profile; no-filter accepts it.
    (message_id,) = await send(served, message(1, GTUBE.decode() + "\r\n"))
    assert await served.stop() == 0
    code, out, err = await run_sinkd("messages", "show", message_id, "--db", str(db), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert (record["profile"], record["verdict"]) == ("no-filter", "accept")


@pytest.mark.parametrize("problem", ["missing", "bad-yaml", "bad-field"])
async def test_a_bad_profile_exits_with_2_naming_the_file_without_a_traceback(
    tmp_path: Path, problem: str
) -> None:
    path = tmp_path / f"{problem}.yaml"
    if problem == "bad-yaml":
        path.write_text("schema: sinkd.profile/v1\nid: [unclosed\n", encoding="utf-8")
    elif problem == "bad-field":
        path.write_text(
            "schema: sinkd.profile/v1\nid: bad-field\ntitle: t\n"
            "models: [{what: w, source: s}]\nscoring: {thresholds: {quarantine: nine}}\n",
            encoding="utf-8",
        )
    code, out, err = await run_sinkd(
        "serve", "--port", "0", "--db", str(tmp_path / "store.db"), "--profile", str(path)
    )
    assert code == 2, err
    assert str(path) in err
    assert "Traceback" not in err
    assert out == b""  # never became ready
    if problem == "bad-field":
        assert "scoring.thresholds.quarantine" in err


async def test_readyz_says_the_store_is_down_while_its_writer_cannot_be_replaced(
    serve: StartServe, tmp_path: Path
) -> None:
    import httpx

    db = tmp_path / "state" / "s.db"
    served = await serve(
        "--db", str(db), "--profile", "no-filter",
        env=clean_env(SINKD_NO_HTTP="", SINKD_HTTP_PORT="0"),
    )  # fmt: skip
    assert served.http is not None
    writer = writer_pid(served)
    async with httpx.AsyncClient(base_url=served.http, timeout=TIMEOUT) as client:
        assert (await client.get("/readyz")).status_code == 200
        # The file is moved away and a directory takes its place: a new writer cannot open it.
        db.rename(tmp_path / "moved.db")
        db.mkdir()
        os.kill(writer, signal.SIGKILL)
        async with asyncio.timeout(TIMEOUT):
            # Another process's state: asking /readyz, as a monitor would, is how to see it.
            while (down := await client.get("/readyz")).status_code == 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert down.status_code == 503
        assert down.json()["detail"] == {"smtp": True, "store": False}
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await send(served, message(1))
        assert refused.value.code == 451  # never a 250 without a commit
        db.rmdir()
        (tmp_path / "moved.db").rename(db)
        (stored,) = await send(served, message(2))  # the next write starts a writer again
        assert (await client.get("/readyz")).status_code == 200
    assert await served.stop() == 0
    assert_store_intact(db, [stored])
