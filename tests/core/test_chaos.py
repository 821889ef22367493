"""Reproducible chaos: the trigger syntax (Mailpit's and sinkd's), the seeded decisions, and
injected failures over SMTP at every stage, against a real ``Sinkd`` on a free port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sinkd.core.chaos import (
    DEFAULT_TEXT,
    Chaos,
    ChaosConfig,
    ChaosStage,
    ChaosTrigger,
    default_enhanced,
    parse_triggers,
)
from sinkd.core.model import Reply
from sinkd.errors import ConfigError
from sinkd.server.runtime import Sinkd
from tests.conftest import StartServer
from tests.support.servers import READY, START_TIMEOUT, clean_env
from tests.support.smtp import TIMEOUT, count, message, raw_client

DRAWS = 200


# An injected failure is not an internal error: nothing of sinkd's may log an ERROR.
pytestmark = pytest.mark.usefixtures("no_internal_errors")


@pytest.fixture(autouse=True)
def sinkd_info_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Injected failures are logged at INFO (logger ``sinkd.chaos``): capture them."""
    caplog.set_level(logging.INFO, logger="sinkd")


def triggers(spec: str) -> tuple[ChaosTrigger, ...]:
    return tuple(parse_triggers(spec))


def decisions(chaos: Chaos, stage: ChaosStage, n: int = DRAWS) -> list[int | None]:
    """The code each of ``n`` events at ``stage`` gets (None: no failure, 0: disconnect)."""
    fired = [chaos.decide(stage) for _ in range(n)]
    return [None if t is None else (0 if t.disconnect else t.code) for t in fired]


def chaos_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.get_records("call") if r.name == "sinkd.chaos"]


# --- the syntax ---------------------------------------------------------------------------------


def test_mailpits_sender_recipient_and_authentication_are_mail_rcpt_and_auth() -> None:
    assert parse_triggers("Sender:451:50,Recipient:550:10,Authentication:535:100") == [
        ChaosTrigger("mail", 50, 451),
        ChaosTrigger("rcpt", 10, 550),
        ChaosTrigger("auth", 100, 535),
    ]


@pytest.mark.parametrize(
    ("spec", "stage"),
    [
        ("sender:451:5", "mail"),
        ("Recipients:451:50", "rcpt"),  # the spelling of Mailpit's own documentation example
        ("AUTH:535:1", "auth"),
        ("  Recipient:450:7  ", "rcpt"),  # Mailpit trims each item
    ],
)
def test_mailpits_names_are_taken_as_mailpit_takes_them(spec: str, stage: str) -> None:
    (trigger,) = parse_triggers(spec)
    assert trigger.stage == stage


def test_sinkds_own_syntax_covers_codes_disconnects_and_texts() -> None:
    assert parse_triggers(
        "connect:421:10,ehlo:554:5,data:disconnect:2,rcpt:450:25:Mailbox busy"
    ) == [
        ChaosTrigger("connect", 10, 421),
        ChaosTrigger("ehlo", 5, 554),
        ChaosTrigger("data", 2, None, disconnect=True),
        ChaosTrigger("rcpt", 25, 450, "Mailbox busy"),
    ]


def test_every_stage_can_be_named() -> None:
    spec = ",".join(f"{stage}:451:10" for stage in ("connect", "ehlo", "auth", "mail", "rcpt"))
    assert [t.stage for t in parse_triggers(spec + ",data:451:10")] == [
        "connect",
        "ehlo",
        "auth",
        "mail",
        "rcpt",
        "data",
    ]


def test_a_text_may_start_with_its_own_enhanced_code() -> None:
    (trigger,) = parse_triggers("rcpt:550:100:5.1.1 No such user here")
    assert trigger.reply() == Reply(550, "5.1.1", "No such user here")
    (bare,) = parse_triggers("data:554:100:5.6.0")
    assert bare.reply() == Reply(554, "5.6.0", DEFAULT_TEXT)


def test_percentages_may_have_decimals_and_an_empty_spec_is_no_chaos() -> None:
    (trigger,) = parse_triggers("rcpt:450:0.5")
    assert trigger.probability == 0.5
    assert parse_triggers("") == []
    assert parse_triggers("   ") == []


def test_spec_writes_each_trigger_back_in_the_syntax_it_was_read_from() -> None:
    spec = "connect:421:10,data:disconnect:2,rcpt:450:25:Mailbox busy,rcpt:550:0.5:5.1.1 Gone"
    parsed = parse_triggers(spec)
    assert ",".join(t.spec() for t in parsed) == spec
    assert parse_triggers(",".join(t.spec() for t in parsed)) == parsed


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("rcpt:650:10", "'rcpt:650:10': '650' is neither an SMTP error code (400-599)"),
        ("Sender:250:10", "'Sender:250:10': '250' is neither an SMTP error code"),
        ("bounce:550:10", "'bounce:550:10': unknown stage 'bounce'"),
        ("rcpt:550", "'rcpt:550': expected STAGE:CODE:PERCENT[:TEXT]"),
        ("rcpt:550:101", "'rcpt:550:101': probability '101' is not a percentage from 0 to 100"),
        ("rcpt:550:-1", "'rcpt:550:-1': probability '-1'"),
        ("rcpt:550:half", "'rcpt:550:half': probability 'half'"),
        ("Sender:451:50,,Recipient:451:5", "chaos trigger 2 is empty"),
        ("rcpt:550:10,", "chaos trigger 2 is empty"),
        ("data:disconnect:5:bye", "'data:disconnect:5:bye': disconnect sends no reply"),
        ("rcpt:450:10:5.1.1 Busy", "'rcpt:450:10:5.1.1 Busy': enhanced code 5.1.1 does not match"),
        ("rcpt:450:10:", "'rcpt:450:10:': the text after the last ':' is empty"),
        ("rcpt:450:10:Mailbox\tbusy", "'rcpt:450:10:Mailbox\\tbusy': chaos text"),
        ("rcpt:450:60,rcpt:550:50", "chaos triggers at rcpt add up to 110%"),
    ],
)
def test_a_bad_spec_is_a_config_error_naming_the_bad_part(spec: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_triggers(spec)
    assert why in str(error.value)


@pytest.mark.parametrize(
    ("stage", "code", "enhanced"),
    [
        ("connect", 421, "4.7.0"),
        ("ehlo", 554, "5.7.1"),
        ("auth", 535, "5.7.8"),
        ("auth", 454, "4.7.0"),
        ("mail", 451, "4.3.0"),
        ("mail", 450, "4.7.1"),
        ("mail", 550, "5.1.0"),
        ("rcpt", 450, "4.2.0"),
        ("rcpt", 452, "4.5.3"),
        ("rcpt", 550, "5.1.1"),
        ("rcpt", 552, "5.2.2"),
        ("data", 550, "5.7.1"),
        ("data", 552, "5.3.4"),
        ("data", 499, "4.7.0"),
        ("data", 599, "5.7.0"),
    ],
)
def test_an_injected_reply_gets_an_enhanced_code_derived_from_its_code_and_stage(
    stage: ChaosStage, code: int, enhanced: str
) -> None:
    assert default_enhanced(stage, code) == enhanced
    (trigger,) = parse_triggers(f"{stage}:{code}:100")
    assert trigger.reply() == Reply(code, enhanced, "Chaos: injected failure")


# --- the decisions ------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_sequence_of_decisions() -> None:
    config = ChaosConfig(triggers("rcpt:550:50"), seed=42)
    first, second = decisions(Chaos(config), "rcpt"), decisions(Chaos(config), "rcpt")
    assert first == second
    assert first.count(550) not in (0, DRAWS)  # a real mix, not a constant


def test_different_seeds_give_different_sequences_over_200_draws() -> None:
    spec = triggers("rcpt:550:50")
    assert decisions(Chaos(ChaosConfig(spec, seed=1)), "rcpt") != decisions(
        Chaos(ChaosConfig(spec, seed=2)), "rcpt"
    )


def test_probability_0_never_fires_and_100_always_does() -> None:
    chaos = Chaos(ChaosConfig(triggers("mail:451:0,rcpt:550:100"), seed=7))
    assert decisions(chaos, "mail", 1000) == [None] * 1000
    assert decisions(chaos, "rcpt", 1000) == [550] * 1000
    assert decisions(chaos, "data", 10) == [None] * 10  # no trigger there at all


def test_the_triggers_of_one_stage_share_its_draw() -> None:
    chaos = Chaos(ChaosConfig(triggers("rcpt:450:30,rcpt:550:20"), seed=3))
    got = decisions(chaos, "rcpt", 2000)
    assert 0.25 < got.count(450) / 2000 < 0.35
    assert 0.15 < got.count(550) / 2000 < 0.25
    assert got.count(None) + got.count(450) + got.count(550) == 2000


def test_events_at_other_stages_do_not_shift_a_stages_sequence() -> None:
    alone = Chaos(ChaosConfig(triggers("rcpt:550:50"), seed=11))
    busy = Chaos(ChaosConfig(triggers("rcpt:550:50,ehlo:554:50,mail:451:50"), seed=11))
    expected = decisions(alone, "rcpt")
    interleaved = []
    for _ in range(DRAWS):
        busy.decide("ehlo")
        busy.decide("mail")
        trigger = busy.decide("rcpt")
        interleaved.append(None if trigger is None else trigger.code)
    assert interleaved == expected


def test_update_replaces_the_triggers_and_restarts_from_the_seed() -> None:
    chaos = Chaos(ChaosConfig(triggers("rcpt:550:50"), seed=5))
    first = decisions(chaos, "rcpt")
    chaos.update(ChaosConfig(triggers("rcpt:550:50"), seed=5))
    assert decisions(chaos, "rcpt") == first
    chaos.update(ChaosConfig(triggers("data:disconnect:100"), seed=5))
    assert decisions(chaos, "rcpt", 20) == [None] * 20
    assert decisions(chaos, "data", 20) == [0] * 20
    assert chaos.config.triggers == triggers("data:disconnect:100")


def test_without_a_seed_a_random_one_is_chosen_and_reproduces_the_run() -> None:
    spec = triggers("rcpt:550:50")
    chaos = Chaos(ChaosConfig(spec))
    seed = chaos.config.seed
    assert isinstance(seed, int)
    assert f"seed={seed}" in chaos.describe()
    assert decisions(chaos, "rcpt") == decisions(Chaos(ChaosConfig(spec, seed)), "rcpt")


def test_a_negative_seed_is_refused() -> None:
    with pytest.raises(ConfigError, match="chaos seed -1"):
        ChaosConfig((), seed=-1)


# --- over SMTP ----------------------------------------------------------------------------------


async def test_rcpt_550_at_100_percent_refuses_every_rcpt_with_an_enhanced_code(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start_server(chaos_triggers=triggers("rcpt:550:100"), chaos_seed=1)
    async with raw_client(app) as client:
        await client.ok("MAIL FROM:<alice@sender.example>")
        for rcpt in ("bob@corp.example", "carol@corp.example", "dave@other.example"):
            answer = await client.command(f"RCPT TO:<{rcpt}>")
            assert answer.line == "550 5.1.1 Chaos: injected failure"
        assert (await client.command("DATA")).line == "503 5.5.1 Error: need RCPT command"
        await client.quit()
    assert await count(app) == 0  # no verdict: an injected failure is not the filter's
    lines = chaos_lines(caplog)
    assert len(lines) == 3
    assert all("stage=rcpt" in line and "550 5.1.1" in line for line in lines)


async def test_data_451_at_100_percent_answers_451_after_the_data_and_stores_nothing(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start_server(chaos_triggers=triggers("data:451:100"), chaos_seed=1)
    async with raw_client(app) as client:
        answer = await client.mail(message(), "alice@sender.example", "bob@corp.example")
        assert answer.line == "451 4.3.0 Chaos: injected failure"
        await client.quit()
    assert await count(app) == 0
    assert not [r for r in caplog.get_records("call") if r.getMessage().startswith("verdict ")]
    (line,) = chaos_lines(caplog)
    assert "stage=data" in line and "451 4.3.0 Chaos: injected failure" in line


async def test_connect_421_at_100_percent_greets_with_421_and_closes(
    start_server: StartServer,
) -> None:
    app = await start_server(chaos_triggers=triggers("connect:421:100"), chaos_seed=1)
    assert app.smtp_address is not None
    reader, writer = await asyncio.open_connection(*app.smtp_address)
    try:
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b"421 4.7.0 Chaos: injected failure\r\n"  # then EOF
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_behind_a_proxy_header_connect_chaos_answers_once_the_header_is_read(
    start_server: StartServer,
) -> None:
    app = await start_server(
        chaos_triggers=triggers("connect:554:100:Go away"), chaos_seed=1, proxy_protocol=True
    )
    assert app.smtp_address is not None
    reader, writer = await asyncio.open_connection(*app.smtp_address)
    try:
        writer.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 25\r\n")
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b"554 5.7.1 Go away\r\n"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_mail_disconnect_at_100_percent_drops_the_connection_after_mail_from(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start_server(chaos_triggers=triggers("mail:disconnect:100"), chaos_seed=1)
    async with raw_client(app) as client:
        await client.send(b"MAIL FROM:<alice@sender.example>\r\n")
        async with asyncio.timeout(TIMEOUT):
            assert await client.reader.read() == b""  # closed, and not one byte of reply
    assert await count(app) == 0
    (line,) = chaos_lines(caplog)
    assert "stage=mail" in line and "injected=disconnect" in line


async def test_mailpits_authentication_535_fails_auth_with_535_5_7_8(
    start_server: StartServer,
) -> None:
    app = await start_server(chaos_triggers=triggers("Authentication:535:100"), chaos_seed=1)
    token = base64.b64encode(b"\0alice\0secret").decode()
    async with raw_client(app) as client:
        answer = await client.command(f"AUTH PLAIN {token}")
        assert answer.line == "535 5.7.8 Chaos: injected failure"
        await client.quit()


async def test_an_ehlo_refused_by_chaos_leaves_the_client_ungreeted(
    start_server: StartServer,
) -> None:
    app = await start_server(chaos_triggers=triggers("ehlo:554:100"), chaos_seed=1)
    async with raw_client(app, ehlo=None) as client:
        assert (await client.command("EHLO client.example")).line == (
            "554 5.7.1 Chaos: injected failure"
        )
        assert (await client.command("HELO client.example")).code == 554
        assert (await client.command("MAIL FROM:<alice@sender.example>")).code == 503
        await client.quit()


async def send_twenty(app: Sinkd) -> list[int]:
    """20 messages, one RCPT each, on one connection: the RCPT code each got."""
    codes: list[int] = []
    async with raw_client(app) as client:
        for n in range(20):
            await client.ok("RSET")
            await client.ok("MAIL FROM:<alice@sender.example>")
            answer = await client.command(f"RCPT TO:<bob{n}@corp.example>")
            codes.append(answer.code)
            if answer.code == 250:
                assert (await client.data(message(f"message {n}"))).code == 250
            else:
                assert answer.line == "550 5.1.1 Chaos: injected failure"
        await client.quit()
    return codes


async def test_a_50_percent_trigger_with_a_fixed_seed_repeats_its_pattern_in_another_run(
    start_server: StartServer,
) -> None:
    settings = {"chaos_triggers": triggers("rcpt:550:50"), "chaos_seed": 2024}
    first_app = await start_server(**settings)
    first = await send_twenty(first_app)
    second_app = await start_server(**settings)
    second = await send_twenty(second_app)
    assert first == second
    assert 250 in first and 550 in first  # a mix, so the pattern means something
    predicted = decisions(Chaos(ChaosConfig(triggers("rcpt:550:50"), seed=2024)), "rcpt", 20)
    assert first == [250 if code is None else code for code in predicted]
    assert await count(first_app) == await count(second_app) == first.count(250)


# --- the command line ---------------------------------------------------------------------------


def run_serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sinkd", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=START_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--chaos-triggers", "rcpt:450:25,rcpt:650:10"), {}, "--chaos-triggers: chaos trigger "),
        ((), {"SINKD_CHAOS_TRIGGERS": "rcpt:650:10"}, "SINKD_CHAOS_TRIGGERS: chaos trigger "),
    ],
)
def test_the_cli_rejects_a_bad_chaos_spec_with_exit_2_naming_the_bad_part(
    args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    result = run_serve(*args, **env)
    assert result.returncode == 2, result.stderr
    assert named + "'rcpt:650:10'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--chaos-seed", "lucky"), {}, "--chaos-seed 'lucky'"),
        ((), {"SINKD_CHAOS_SEED": "-3"}, "SINKD_CHAOS_SEED '-3'"),
    ],
)
def test_the_cli_rejects_a_seed_that_is_no_whole_number_with_exit_2(
    args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    result = run_serve("--chaos-triggers", "rcpt:550:10", *args, **env)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


async def test_sinkd_serve_takes_chaos_from_its_environment_and_logs_the_seed(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinkd",
        "serve",
        "--port",
        "0",
        "--db",
        f"{tmp_path}/store.db",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(SINKD_CHAOS_TRIGGERS="Recipient:451:100", SINKD_CHAOS_SEED="9"),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(START_TIMEOUT):
            ready = READY.match((await process.stdout.readline()).decode().strip())
        assert ready, await process.stderr.read()
        reader, writer = await asyncio.open_connection(ready["host"], int(ready["port"]))
        async with asyncio.timeout(TIMEOUT):
            await reader.readline()
            writer.write(
                b"HELO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
            )
            replies = [(await reader.readline()).decode().strip() for _ in range(3)]
            writer.write(b"QUIT\r\n")
            await reader.read()
        writer.close()
        assert replies[2] == "451 4.3.0 Chaos: injected failure"
    finally:
        process.terminate()
        async with asyncio.timeout(TIMEOUT):
            _, err = await process.communicate()
    log = err.decode()
    assert "chaos triggers=rcpt:451:100 seed=9" in log
    assert re.search(r"sinkd\.chaos: chaos stage=rcpt .*injected='451 4\.3\.0", log), log
