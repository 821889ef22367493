"""``sinkd.services.settings``: every setting declared once, the serve parser generated from
the declarations, and variables read with the same parsers and precedence as options."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest

from sinkd.cli import EXIT_USAGE, build_parser, main
from sinkd.server.options import ServerOptions
from sinkd.services.settings import (
    Settings,
    options,
)
from tests.support.docs import markers, page, rendered
from tests.support.settings import clear_sinkd_environment, serve


@pytest.fixture(autouse=True)
def _no_sinkd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_sinkd_environment(monkeypatch)


@pytest.mark.parametrize(
    ("flag", "given", "variable", "from_env", "field", "value", "env_value"),
    [
        ("--port", "2600", "SINKD_PORT", "2700", "port", 2600, 2700),
        ("--http-port", "0", "SINKD_HTTP_PORT", "9000", "http_port", 0, 9000),
        ("--profile", "no-filter", "SINKD_PROFILE", "strict-finance", "profile", "no-filter",
         "strict-finance"),
        ("--max-message-size", "1M", "SINKD_MAX_MESSAGE_SIZE", "2M", "max_message_size",
         1024**2, 2 * 1024**2),
        ("--dns-timeout", "2", "SINKD_DNS_TIMEOUT", "3", "dns_timeout", 2.0, 3.0),
        ("--greylist-delay", "0", "SINKD_GREYLIST_DELAY", "60", "greylist_delay", 0.0, 60.0),
        ("--auth", "off", "SINKD_AUTH", "required", "auth", "off", "required"),
        ("--workers", "auto", "SINKD_WORKERS", "3", "workers", 0, 3),
        ("--hostname", "a.example", "SINKD_HOSTNAME_SMTP", "b.example", "hostname",
         "a.example", "b.example"),
    ],
)  # fmt: skip
def test_an_option_wins_over_its_variable_which_wins_over_the_default(
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    given: str,
    variable: str,
    from_env: str,
    field: str,
    value: object,
    env_value: object,
) -> None:
    assert getattr(serve(), field) == getattr(Settings(), field)
    monkeypatch.setenv(variable, from_env)
    assert getattr(serve(), field) == env_value
    assert getattr(serve(flag, given), field) == value


def test_a_variable_is_read_with_its_options_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKD_MAX_MESSAGE_SIZE", "10M")
    monkeypatch.setenv("SINKD_SPAMD", "[::1]:783")
    monkeypatch.setenv("SINKD_NO_HTTP", "yes")
    settings = serve()
    assert settings.max_message_size == 10 * 1024**2
    assert (settings.spamd, settings.http) == (("::1", 783), False)


def test_a_repeatable_option_adds_to_the_items_its_variable_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SINKD_ROUTE", "a.example=no-filter, b.example=strict-finance")
    monkeypatch.setenv("SINKD_PROFILES_DIR", "/one,/two")
    settings = serve("--route", "c.example=no-filter", "--profiles-dir", "/three")
    assert dict(settings.routes) == {
        "a.example": "no-filter",
        "b.example": "strict-finance",
        "c.example": "no-filter",
    }
    assert settings.profiles_dirs == [Path("/one"), Path("/two"), Path("/three")]


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("SINKD_PORT", "SINKD_DNS", "SINKD_SPAMD", "SINKD_ROUTE", "SINKD_NO_HTTP"):
        monkeypatch.setenv(variable, "")
    assert dataclasses.replace(serve(), hostname="h", db=Path("d")) == Settings(
        hostname="h", db=Path("d")
    )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("SINKD_PORT", "twenty", "expected a whole number"),
        ("SINKD_MAX_RECIPIENTS", "many", "expected a whole number"),
        ("SINKD_MAX_MESSAGE_SIZE", "lots", "expected a size such as 10485760 or 10M"),
        ("SINKD_ROUTE", "a.example", "expected DOMAIN=PROFILE"),
        ("SINKD_SPAMD", "spamd", "expected HOST:PORT"),
        ("SINKD_DNS", "online", "expected offline or live"),
        ("SINKD_AUTH", "maybe", "expected any, required or off"),
        ("SINKD_LOG_FORMAT", "xml", "expected text or json"),
        ("SINKD_DNS_TIMEOUT", "0", "expected 0 < seconds <= 3600"),
        ("SINKD_WORKERS", "99", "expected a number of processes 1..64, or auto"),
    ],
)
def test_a_bad_variable_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    problem: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["serve"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{variable}={value!r}" in err and problem in err
    assert "Traceback" not in err


def test_a_bad_serve_variable_does_not_stop_other_subcommands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SINKD_PORT", "twenty")
    assert main(["profiles", "list"]) == 0
    assert "typical-corporate" in capsys.readouterr().out


def test_serve_without_options_runs_with_the_declared_defaults() -> None:
    # The two computed defaults (this host's name, the store path) are computed the same way.
    assert serve() == Settings()


def test_every_setting_is_a_serve_option_naming_its_variable_in_its_help() -> None:
    declared = {f.name for f, _ in options()}
    assert declared == {f.name for f in dataclasses.fields(Settings)}
    [sub] = [a for a in build_parser("serve")._actions if a.dest == "command"]
    serve_help = " ".join(sub.choices["serve"].format_help().split())  # type: ignore[attr-defined]
    for _, option in options():
        assert option.flag in serve_help
        assert f"env {option.variable}" in serve_help, option.flag


def test_server_options_take_every_setting_of_the_same_name() -> None:
    settings = Settings(
        hostname="mx.example",
        max_message_size=1234,
        max_recipients=7,
        auth="required",
        auth_user="u",
        auth_password="p",
        client_ip="192.0.2.1",
        helo="client.example",
        proxy_protocol=True,
    )
    context = ssl.create_default_context()
    built = ServerOptions.of(settings, context)
    shared = [f.name for f in dataclasses.fields(ServerOptions) if hasattr(settings, f.name)]
    assert len(shared) == 9
    assert all(getattr(built, name) == getattr(settings, name) for name in shared)
    assert built.tls_context is context
    assert ServerOptions().max_message_size == Settings().max_message_size


def test_the_docs_option_table_is_generated_from_the_declarations() -> None:
    # The command-line page asks for the table and the site's hook renders it from
    # markdown_table() at build time: every declared serve option shows, with its variable.
    assert markers(page("cli.md")).count("serve-options") == 1
    shown = rendered("cli.md").splitlines()
    for f, option in options():
        if "serve" not in option.commands:
            continue
        heads = (f"| `{option.flag}`", f"| `{option.flag} ")
        row = next((line for line in shown if line.startswith(heads)), "")
        assert f"`{option.variable}" in row, f"{option.flag} ({f.name}) is not in docs/cli.md"
