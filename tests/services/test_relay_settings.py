"""The ``--relay`` options of ``sinkd serve``: the target URL (only ``smtp://`` and
``smtps://`` with a host and an optional port), the rest of the relay settings from options and
variables, and clear usage errors naming the option or variable for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinkd.cli import EXIT_USAGE, main
from sinkd.services.relay import RelayConfig
from sinkd.services.settings import RelayTarget
from tests.support.servers import run_sinkd
from tests.support.settings import clear_sinkd_environment, serve


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_sinkd_environment(monkeypatch)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://mailpit", RelayTarget("smtp", "mailpit", 25)),
        ("smtp://mailpit:1025", RelayTarget("smtp", "mailpit", 1025)),
        ("SMTP://Mailpit:1025/", RelayTarget("smtp", "mailpit", 1025)),
        ("smtps://relay.example", RelayTarget("smtps", "relay.example", 465)),
        ("smtp://[::1]:2525", RelayTarget("smtp", "::1", 2525)),
    ],
)
def test_a_relay_url_names_scheme_host_and_port_with_the_default_port(
    url: str, target: RelayTarget
) -> None:
    assert serve("--relay", url).relay == target


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mailpit:8025", "got scheme 'http'"),
        ("mailpit:1025", "got scheme 'mailpit'"),
        ("smtp://user:pw@mailpit", "no user or password in the URL"),
        ("smtp://mailpit/inbox", "no path, query or fragment"),
        ("smtp://mailpit?x=1", "no path, query or fragment"),
        ("smtp://mailpit:99999", "expected smtp://HOST[:PORT]"),
        ("smtp://:25", "the host is missing"),
    ],
)
def test_a_bad_relay_url_is_a_usage_error_naming_the_option(
    capsys: pytest.CaptureFixture[str], url: str, problem: str
) -> None:
    assert main(["serve", "--relay", url]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "argument --relay:" in err and problem in err
    assert "Traceback" not in err and "pw" not in err.replace(url, "")


def test_a_bad_relay_variable_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SINKD_RELAY", "ftp://files")
    assert main(["serve"]) == EXIT_USAGE
    assert "SINKD_RELAY='ftp://files'" in capsys.readouterr().err


async def test_sinkd_serve_with_a_bad_relay_url_exits_2_naming_it() -> None:
    code, _, err = await run_sinkd("serve", "--relay", "smtp://mailpit/path")
    assert code == EXIT_USAGE
    assert "--relay" in err and "no path" in err


def test_relay_options_and_variables_make_the_relay_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    monkeypatch.setenv("SINKD_RELAY", "smtp://mailpit:1025")
    monkeypatch.setenv("SINKD_RELAY_USER", "ann")
    monkeypatch.setenv("SINKD_RELAY_PASSWORD", "s3cret")
    s = serve(
        "--relay-starttls",
        "require",
        "--relay-verdicts",
        "quarantine, accept",
        "--relay-backoff",
        "2,60",
        "--relay-lifetime",
        "3600",
        "--relay-concurrency",
        "2",
        "--relay-ca",
        str(ca),
        "--relay-insecure",
    )
    config = RelayConfig.of(s)
    assert config is not None
    assert (config.target, config.starttls, config.user, config.password) == (
        RelayTarget("smtp", "mailpit", 1025),
        "require",
        "ann",
        "s3cret",
    )
    assert s.relay_verdicts == ("quarantine", "accept")
    assert (config.backoff, config.lifetime, config.concurrency) == ((2.0, 60.0), 3600.0, 2)
    assert (config.ca, config.insecure) == (ca, True)
    assert "s3cret" not in repr(s) + repr(config)
    assert [config.delay(n) for n in (1, 2, 3, 5, 6, 20)] == [2, 4, 8, 32, 60, 60]


def test_without_relay_there_is_no_relay_configuration() -> None:
    s = serve()
    assert s.relay is None and RelayConfig.of(s) is None
    assert s.relay_verdicts == ("accept",)
    assert s.relay_backoff == (1.0, 300.0) and s.relay_starttls == "opportunistic"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--relay-verdicts", "accept,reject"], "--relay-verdicts"),
        (["--relay-backoff", "10,5"], "--relay-backoff"),
        (["--relay-backoff", "5"], "--relay-backoff"),
        (["--relay-lifetime", "0"], "--relay-lifetime"),
        (["--relay-concurrency", "0"], "--relay-concurrency"),
        (["--relay-starttls", "maybe"], "--relay-starttls"),
    ],
)
def test_bad_relay_options_are_usage_errors_naming_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    assert main(["serve", "--relay", "smtp://mailpit", *argv]) == EXIT_USAGE
    assert f"argument {problem}" in capsys.readouterr().err


def test_relay_user_without_password_and_a_missing_ca_file_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["serve", "--relay", "smtp://m", "--relay-user", "ann"]) == EXIT_USAGE
    assert "--relay-user and --relay-password go together" in capsys.readouterr().err
    missing = tmp_path / "nope.pem"
    assert main(["serve", "--relay", "smtp://m", "--relay-ca", str(missing)]) == EXIT_USAGE
    assert f"--relay-ca {missing}: no such file" in capsys.readouterr().err
