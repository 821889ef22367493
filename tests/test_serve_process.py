"""``sinkd serve`` as a real process: readiness line, durability across kill -9, clean shutdown
on signals, JSON logs, environment variables and start-up errors.

Each server is ``python -m sinkd serve --port 0`` with every ``SINKD_*`` variable cleared and
``SINKD_NO_HTTP=1`` (``tests/web`` tests the HTTP API); tests wait for its ``sinkd ready
smtp=HOST:PORT`` line (never sleep) and read the store back through the ``sinkd messages``
command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import pytest

from sinkd.matching import GTUBE

READY = re.compile(
    r"^sinkd ready smtp=(?P<host>[^:\s]+):(?P<port>\d+)"
    r"(?: http=(?P<http_host>[^:\s]+):(?P<http_port>\d+))?$"
)
QUEUED = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-F]{12,40})$")
START_TIMEOUT = 30.0
TIMEOUT = 15.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any ``SINKD_*`` variable, and without the HTTP API (its fixed
    default port would clash between servers); ``SINKD_NO_HTTP=""`` opts back in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["SINKD_NO_HTTP"] = "1"
    env.update(extra)
    return env


@dataclass
class Served:
    """A running ``sinkd serve``; its stderr is drained continuously into ``stderr``."""

    process: asyncio.subprocess.Process
    host: str = ""
    port: int = 0
    http: str | None = None  # "http://HOST:PORT" when the readiness line names an HTTP API
    stderr: list[str] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process, wait for it and for the end of its output; its exit code."""
        self.process.send_signal(signum)
        return await self.wait()

    async def wait(self) -> int:
        async with asyncio.timeout(TIMEOUT):
            code = await self.process.wait()
            if self.drain is not None:
                await self.drain
        return code


StartServe = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[StartServe]:
    """Start ``sinkd serve`` and wait for its readiness line; every process is reaped after."""
    started: list[Served] = []

    async def start(*args: str, env: dict[str, str] | None = None, port: bool = True) -> Served:
        command = [sys.executable, "-m", "sinkd", "serve", *(["--port", "0"] if port else [])]
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env or clean_env(),
            cwd=tmp_path,
        )
        served = Served(process)
        started.append(served)

        async def drain() -> None:
            assert process.stderr is not None
            async for line in process.stderr:
                served.stderr.append(line.decode("utf-8", "replace").rstrip("\n"))

        served.drain = asyncio.create_task(drain())
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        match = READY.match(line)
        assert match, f"no readiness line, got {line!r}; stderr: {served.stderr}"
        served.host, served.port = match["host"], int(match["port"])
        if match["http_host"]:
            served.http = f"http://{match['http_host']}:{match['http_port']}"
        return served

    yield start
    for served in started:
        if served.process.returncode is None:
            served.process.kill()
        await served.wait()
        assert served.process.stdout is not None
        await served.process.stdout.read()


async def run_sinkd(*args: str) -> tuple[int, bytes, str]:
    """Run a one-shot ``sinkd`` command; (exit code, stdout bytes, stderr text)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinkd",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    async with asyncio.timeout(TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out, err.decode("utf-8", "replace")


def message(n: int, body: str | None = None) -> bytes:
    text = (
        body
        if body is not None
        else (f"Message number {n}.\r\n.A line that starts with a dot.\r\n..and one with two.\r\n")
    )
    return (
        "From: Alice <alice@sender.example>\r\n"
        "To: Bob <bob@corp.example>\r\n"
        f"Subject: durable {n}\r\n"
        "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        f"Message-ID: <durable-{n}@sender.example>\r\n"
        "\r\n" + text
    ).encode()


async def send(served: Served, *messages: bytes) -> list[str]:
    """Send messages on one connection; the id each 250 names."""
    ids: list[str] = []
    async with aiosmtplib.SMTP(
        hostname=served.host, port=served.port, start_tls=False, timeout=TIMEOUT
    ) as smtp:
        for raw in messages:
            _, text = await smtp.sendmail("alice@sender.example", ["bob@corp.example"], raw)
            match = QUEUED.match(text)
            assert match, text
            ids.append(match.group(1))
    return ids


def writer_pid(served: Served) -> int:
    """The server's store writer process (``python -m sinkd.store.writer_main``)."""
    pid = served.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    (found,) = [
        int(child)
        for child in children
        if b"sinkd.store.writer_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return found


def assert_store_intact(db: Path, ids: list[str]) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        found = {row[0] for row in conn.execute("SELECT id FROM messages")}
    assert set(ids) <= found


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
