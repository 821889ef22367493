"""The HTTP API's first slice against a real ``Sinkd`` (SMTP and HTTP on free ports): health
checks, reading and changing chaos at runtime, JSON errors and the guard of state-changing
requests; and ``sinkd serve`` as a process announcing both listeners."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import httpx
import pytest

from sinkd.errors import ConfigError
from sinkd.server.runtime import Sinkd
from sinkd.services.settings import Settings
from tests.conftest import StartServer
from tests.support.servers import READY, START_TIMEOUT, clean_env
from tests.support.smtp import TIMEOUT, count, message, raw_client
from tests.support.web import CHAOS, JSON, assert_error, base_url, put_chaos

STAGES = ["connect", "ehlo", "auth", "mail", "rcpt", "data"]


async def rcpt_answer(app: Sinkd) -> str:
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        answer = await client.command("RCPT TO:<bob@corp.example>")
        await client.quit()
    return answer.line


# --- health ---------------------------------------------------------------------------------------


async def test_livez_and_readyz_answer_ok_while_smtp_and_the_store_are_up(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    live = await http.get("/livez")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = await http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "smtp": True, "store": True})


async def test_readyz_answers_503_once_the_smtp_listener_is_down(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    assert app.server is not None
    app.server.close()
    await app.server.wait_closed()
    body = assert_error(await http.get("/readyz"), 503)
    assert body["detail"] == {"smtp": False, "store": True}


# --- chaos ----------------------------------------------------------------------------------------


async def test_get_chaos_shows_the_triggers_in_sinkds_syntax_and_the_seed(
    start_server: StartServer,
) -> None:
    app = await start_server(http=True, chaos_triggers=(), chaos_seed=5)
    async with httpx.AsyncClient(base_url=base_url(app), timeout=TIMEOUT) as http:
        response = await http.get(CHAOS)
    assert response.status_code == 200
    assert response.json() == {"triggers": "", "seed": 5, "stages": STAGES}


async def test_put_chaos_takes_effect_at_the_next_smtp_command_and_empty_turns_it_off(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    assert (await rcpt_answer(app)).startswith("250 ")
    response = await put_chaos(http, {"triggers": "Recipient:550:100", "seed": 7})  # Mailpit's
    assert response.status_code == 200, response.text
    assert response.json() == {"triggers": "rcpt:550:100", "seed": 7, "stages": STAGES}
    assert (await http.get(CHAOS)).json()["triggers"] == "rcpt:550:100"
    assert await rcpt_answer(app) == "550 5.1.1 Chaos: injected failure"

    off = await put_chaos(http, {"triggers": ""})
    assert off.status_code == 200 and off.json()["triggers"] == ""
    assert isinstance(off.json()["seed"], int)  # no seed given: a random one, shown
    async with raw_client(app) as client:
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.code == 250, answer.lines
        await client.quit()
    assert await count(app) == 1


async def test_a_change_reaches_a_session_opened_before_it(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        assert (await client.command("RCPT TO:<bob@corp.example>")).line.startswith("250 ")
        assert (await put_chaos(http, {"triggers": "rcpt:550:100"})).status_code == 200
        answer = await client.command("RCPT TO:<carol@corp.example>")
        assert answer.line == "550 5.1.1 Chaos: injected failure"
        await client.quit()


async def test_an_invalid_spec_is_422_naming_the_item_and_leaves_chaos_unchanged(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    await put_chaos(http, {"triggers": "rcpt:450:25", "seed": 3})
    body = assert_error(
        await put_chaos(http, {"triggers": "rcpt:550:10,rcpt:650:10", "seed": 4}), 422
    )
    assert "'rcpt:650:10'" in body["detail"]
    for bad, named in (
        ({"triggers": "rcpt:550:10", "seed": -1}, "seed -1"),
        ({"triggers": 42}, "triggers"),
        ({"seed": 1}, "triggers"),
        ({"triggers": "", "sede": 1}, "'sede'"),
        (["rcpt:550:10"], "JSON object"),
    ):
        assert_error(await put_chaos(http, bad), 422, detail=named)
    assert (await http.get(CHAOS)).json()["triggers"] == "rcpt:450:25"
    assert app.chaos is not None and app.chaos.config.seed == 3


async def test_bad_json_is_400_and_a_wrong_content_type_is_415(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    assert_error(await http.put(CHAOS, content=b'{"triggers": ', headers=JSON), 400)
    assert_error(await http.put(CHAOS, content=b"\xff\xfe", headers=JSON), 400)
    body = b'{"triggers": "rcpt:550:100"}'
    assert_error(
        await http.put(CHAOS, content=body, headers={"Content-Type": "text/plain"}),
        415,
        detail="application/json",
    )
    assert_error(await http.put(CHAOS, content=body), 415)  # no content type at all
    charset = await http.put(
        CHAOS, content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200
    assert_error(
        await http.put(
            CHAOS,
            data={"triggers": "rcpt:550:100"},  # what a cross-site HTML form sends
        ),
        415,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # the right host on another port is another origin
        {"Origin": "https://127.0.0.1:{port}"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_a_cross_origin_put_is_403_and_leaves_chaos_unchanged(
    app: Sinkd, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert app.http_address is not None
    headers = {k: v.format(port=app.http_address[1]) for k, v in headers.items()}
    assert_error(await put_chaos(http, {"triggers": "rcpt:550:100"}, **headers), 403)
    assert (await http.get(CHAOS)).json()["triggers"] == ""
    assert (await rcpt_answer(app)).startswith("250 ")


async def test_a_same_origin_put_is_allowed(app: Sinkd, http: httpx.AsyncClient) -> None:
    assert app.http_address is not None
    port = app.http_address[1]
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        response = await put_chaos(
            http, {"triggers": "mail:451:1"}, Origin=origin, **{"Sec-Fetch-Site": "same-origin"}
        )
        assert response.status_code == 200, (origin, response.text)


async def test_unknown_paths_are_404_and_wrong_methods_405_as_json(
    app: Sinkd, http: httpx.AsyncClient
) -> None:
    assert_error(await http.get("/api/v1/nothing"), 404, detail="/api/v1/nothing")
    response = await http.post(CHAOS, content=b"{}", headers=JSON)
    assert_error(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PUT"}
    assert_error(await http.delete("/livez", headers=JSON), 405)


# --- start-up -----------------------------------------------------------------------------------


async def test_a_taken_http_port_is_a_config_error_and_nothing_stays_open(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = Sinkd(
            Settings(port=0, db=tmp_path / "store.db", hostname="sinkd.test", http_port=port)
        )
        with pytest.raises(ConfigError, match=f"--http-port {port}: cannot listen"):
            await app.start()
    assert (app.server, app.store, app.http, app.http_address) == (None, None, None, None)


# --- sinkd serve --------------------------------------------------------------------------------


async def test_sinkd_serve_announces_smtp_then_http_and_serves_livez(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sinkd", "serve", "--port", "0", "--http-port", "0"),
        *("--db", str(tmp_path / "store.db")),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(SINKD_NO_HTTP=""),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        ready = READY.match(line)
        assert ready and ready["http_port"], (line, await process.stderr.read())
        assert line.startswith(f"sinkd ready smtp={ready['host']}:{ready['port']} http=")
        assert ready["http_host"] == "127.0.0.1" and int(ready["http_port"]) != 0
        url = f"http://{ready['http_host']}:{ready['http_port']}/livez"
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.get(url)
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
    finally:
        process.terminate()
        async with asyncio.timeout(TIMEOUT):
            _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
