"""docker/Dockerfile, docker/compose.yaml and docker/compose.scale.yaml, without a Docker engine:
every ``sinkd`` command they run parses with sinkd's own command line, the variables the image
and the compose files set are ones ``sinkd serve`` reads, and each compose file has the structure
Compose needs. (hadolint lints the Dockerfiles in .ci/run.)"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sinkd.cli import build_parser
from sinkd.core.profiles import ProfileSet
from sinkd.location import StoreLocation
from sinkd.services.settings import Settings, from_namespace
from tests.support.paths import ROOT

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
SCALE = DOCKER / "compose.scale.yaml"  # several instances on one PostgreSQL (issue 21)
COMPOSE_FILES = (COMPOSE, SCALE)


def instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
            pending = ""
    return result


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list; shell form is refused (hadolint DL3025 too)."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def only(path: Path, keyword: str) -> str:
    [arguments] = [a for k, a in instructions(path) if k == keyword]
    return arguments


def image_env(path: Path = DOCKER / "Dockerfile") -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in instructions(path):
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))  # type: ignore[misc]
    return env


def healthcheck_command(path: Path) -> list[str]:
    options, _, command = only(path, "HEALTHCHECK").partition("CMD ")
    assert options.startswith("--"), "HEALTHCHECK options, then CMD in exec form"
    return exec_form(command)


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def uses_sinkd_image(service: dict[str, Any]) -> bool:
    build = service.get("build", {})
    return service.get("image") == "sinkd:local" or build.get("dockerfile") == "docker/Dockerfile"


def sinkd_commands() -> list[tuple[str, list[str], dict[str, str]]]:
    """Every sinkd command line the image and the compose files run: (where, argv, env); the
    compose ones named ``compose SERVICE`` (compose.yaml) or ``compose.scale SERVICE``."""
    dockerfile = DOCKER / "Dockerfile"
    entrypoint = exec_form(only(dockerfile, "ENTRYPOINT"))
    cmd = exec_form(only(dockerfile, "CMD"))
    found = [
        ("Dockerfile CMD", entrypoint + cmd, image_env()),
        ("Dockerfile HEALTHCHECK", healthcheck_command(dockerfile), image_env()),
    ]
    for path in COMPOSE_FILES:
        prefix = "compose" if path == COMPOSE else "compose.scale"
        for name, service in compose(path)["services"].items():
            if not uses_sinkd_image(service):
                continue
            environment = service.get("environment", {})
            env = image_env() | {k: interpolate(v) for k, v in environment.items()}
            found.append((f"{prefix} {name}", entrypoint + service.get("command", cmd), env))
            test = service["healthcheck"]["test"]
            assert test[0] == "CMD", f"{prefix} {name}: healthcheck test in exec form"
            found.append((f"{prefix} {name} healthcheck", test[1:], env))
    return found


def compose_services() -> list[tuple[str, dict[str, Any]]]:
    """(name, service) of every compose file (both have a ``spamd``)."""
    return [item for path in COMPOSE_FILES for item in compose(path)["services"].items()]


def subparsers() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def subcommands() -> set[str]:
    return set(subparsers())


READYZ_MISSING = "readyz" not in subcommands()


def _command_cases() -> list[Any]:
    cases = []
    for where, argv, env in sinkd_commands():
        marks = []
        if argv[1:2] == ["readyz"]:
            marks.append(
                pytest.mark.xfail(
                    READYZ_MISSING, reason="readyz lands with the plugin branch", strict=True
                )
            )
        cases.append(pytest.param(argv, env, id=where, marks=marks))
    return cases


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SINKD_* variable from the test runner's environment; tests set the image's."""
    for name in list(os.environ):
        if name.startswith("SINKD_"):
            monkeypatch.delenv(name)
    return monkeypatch


# --- the commands -----------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "env"), _command_cases())
def test_every_sinkd_command_the_container_files_run_parses_with_sinkds_cli(
    argv: list[str], env: dict[str, str], environment: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        environment.setenv(name, value)
    assert argv[0] == "sinkd"
    args = build_parser().parse_args(argv[1:])  # an unknown option or bad value raises
    if args.command == "serve":
        from_namespace(args)  # the checks serve makes before it starts
        ProfileSet([]).resolve(args.profile)  # a built-in profile: the mounted dir is empty
        for address in (args.spamd,):
            if address is not None:
                assert address[0] in dict(compose_services()), f"--spamd {address}: no such service"


def test_the_image_and_compose_run_serve_and_check_readiness_with_readyz() -> None:
    commands = {where: argv for where, argv, _ in sinkd_commands()}
    assert commands["Dockerfile CMD"] == ["sinkd", "serve"]
    assert commands["Dockerfile HEALTHCHECK"][:2] == ["sinkd", "readyz"]
    assert commands["compose sinkd-spamassassin"] == [
        "sinkd", "serve", "--profile", "spamassassin-default", "--spamd", "spamd:783"
    ]  # fmt: skip
    assert all(argv[:2] == ["sinkd", "readyz"] for w, argv in commands.items() if "health" in w)


# --- the image --------------------------------------------------------------------------------


def test_the_image_serves_smtp_and_http_on_every_interface_with_the_store_in_data(
    environment: pytest.MonkeyPatch,
) -> None:
    for name, value in image_env().items():
        environment.setenv(name, value)
    settings = from_namespace(build_parser().parse_args(["serve"]))
    assert (settings.host, settings.port) == ("0.0.0.0", 2525)
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8025)
    assert settings.db == Path("/data/sinkd.db")
    assert settings.profiles_dirs == [Path("/etc/sinkd/profiles")]


def test_every_sinkd_variable_the_image_and_compose_set_changes_what_serve_runs_with(
    environment: pytest.MonkeyPatch,
) -> None:
    baseline = asdict(from_namespace(build_parser().parse_args(["serve"])))
    variables = set(image_env().items())
    for _, service in compose_services():
        variables |= {(k, interpolate(v)) for k, v in service.get("environment", {}).items()}
    assert {"SINKD_PROFILE", "SINKD_VERDICT_LOG", "SINKD_STORE"} <= {k for k, _ in variables}
    serve_help = " ".join(subparsers()["serve"].format_help().split())
    for name, value in sorted(variables):
        if not name.startswith("SINKD_"):
            continue
        environment.setenv(name, value)
        changed = asdict(from_namespace(build_parser().parse_args(["serve"])))
        environment.delenv(name)
        # The value lands in a setting (a store location's URL or path: a nested dataclass);
        # where it equals the default, the option says it reads it.
        values = [*changed.values()]
        values += [n for v in changed.values() if isinstance(v, dict) for n in v.values()]
        assert any(
            str(v) == value or (isinstance(v, list) and value in map(str, v)) for v in values
        ), f"{name}={value} is not in the settings sinkd serve runs with"
        assert changed != baseline or f"env {name}" in serve_help, name


def test_the_image_exposes_the_ports_and_the_volume_serve_uses() -> None:
    dockerfile = DOCKER / "Dockerfile"
    assert only(dockerfile, "EXPOSE").split() == [str(Settings.port), str(Settings.http_port)]
    assert exec_form(only(dockerfile, "VOLUME")) == ["/data"]
    health = healthcheck_command(dockerfile)
    assert health[health.index("--url") + 1] == f"http://127.0.0.1:{Settings.http_port}"
    run = " ".join(a for k, a in instructions(dockerfile) if k == "RUN")
    assert "mkdir -p /data /etc/sinkd/profiles" in run


def test_the_image_runs_as_a_non_root_user_on_a_slim_python_base() -> None:
    dockerfile = DOCKER / "Dockerfile"
    assert only(dockerfile, "FROM") == "python:3.12-slim"
    user = only(dockerfile, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert f"--uid {user.split(':')[0]}" in " ".join(
        a for k, a in instructions(dockerfile) if k == "RUN"
    )
    keywords = [k for k, _ in instructions(dockerfile)]
    assert keywords.index("USER") < keywords.index("CMD")


def test_the_image_copies_what_pip_install_reads_and_dockerignore_lets_it_through() -> None:
    copies = [a.split() for k, a in instructions(DOCKER / "Dockerfile") if k == "COPY"]
    sources = [source for *from_context, _ in copies for source in from_context]
    assert {"pyproject.toml", "README.md", "sinkd", "profiles"} <= set(sources)
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    assert set(sources) <= set(allowed)
    for source in sources:
        assert (ROOT / source).exists(), source


# --- the compose file -------------------------------------------------------------------------


def test_compose_has_sinkd_always_and_spamd_only_with_the_spamassassin_profile() -> None:
    services = compose()["services"]
    assert set(services) == {"sinkd", "spamd", "sinkd-spamassassin"}
    assert "profiles" not in services["sinkd"]
    assert services["spamd"]["profiles"] == ["spamassassin"]
    assert services["sinkd-spamassassin"]["profiles"] == ["spamassassin"]
    depends = services["sinkd-spamassassin"]["depends_on"]
    assert depends["spamd"] == {"condition": "service_healthy"}


def test_compose_publishes_smtp_and_http_on_the_loopback_of_the_host() -> None:
    services = compose()["services"]
    published = {
        name: [str(p).rsplit(":", 2) for p in services[name]["ports"]]
        for name in ("sinkd", "sinkd-spamassassin")
    }
    assert published["sinkd"] == [["127.0.0.1", "2525", "2525"], ["127.0.0.1", "8025", "8025"]]
    assert published["sinkd-spamassassin"] == [
        ["127.0.0.1", "2526", "2525"],
        ["127.0.0.1", "8026", "8025"],
    ]
    assert "ports" not in services["spamd"]  # reachable inside the compose network only


def test_compose_healthchecks_and_volumes_are_complete() -> None:
    data = compose()
    for name, service in data["services"].items():
        health = service["healthcheck"]
        assert health["test"][0] == "CMD", name
        assert {"interval", "timeout", "retries", "start_period"} <= set(health), name
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+(ms|s|m)", health[key]), (name, key)
    for name in ("sinkd", "sinkd-spamassassin"):
        volumes = data["services"][name]["volumes"]
        named = [v.split(":")[0] for v in volumes if v.endswith(":/data")]
        assert named and set(named) <= set(data["volumes"]), name
        assert "./profiles:/etc/sinkd/profiles:ro" in volumes
    assert (DOCKER / "profiles").is_dir()


def test_compose_builds_from_dockerfiles_that_exist() -> None:
    services = compose()["services"]
    for name, service in services.items():  # local images are built, never pulled
        assert service["image"].endswith(":local") and "build" in service, name
    sinkd = services["sinkd"]["build"]
    assert services["sinkd-spamassassin"]["build"] == sinkd
    assert (DOCKER / sinkd["context"] / sinkd["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    spamd = DOCKER / services["spamd"]["build"]["context"] / "Dockerfile"
    assert spamd.is_file()
    # --spamd spamd:783 reaches the port the spamd image serves on.
    assert only(spamd, "EXPOSE") == "783"
    command = exec_form(only(spamd, "CMD"))
    assert command[command.index("-p") + 1] == "783"
    assert command[command.index("-i") + 1] == "0.0.0.0"
    assert "--local" in command


# --- compose.scale.yaml: PostgreSQL and two sinkd instances as one sink ------------------------


def scale_store(name: str) -> StoreLocation:
    """The store an instance of compose.scale.yaml serves, ``${...:-default}`` interpolated."""
    value = interpolate(compose(SCALE)["services"][name]["environment"]["SINKD_STORE"])
    return StoreLocation.parse(value)


def test_compose_scale_runs_postgresql_spamd_and_two_sinkd_instances() -> None:
    services = compose(SCALE)["services"]
    assert set(services) == {"postgres", "spamd", "sinkd-a", "sinkd-b"}
    assert all("profiles" not in service for service in services.values())  # all start by default
    assert services["postgres"]["image"] == "postgres:15"  # the official image, pulled
    sinkd = compose(COMPOSE)["services"]["sinkd"]["build"]
    spamd = compose(COMPOSE)["services"]["spamd"]["build"]
    for name in ("sinkd-a", "sinkd-b"):  # the project's image, built as compose.yaml builds it
        assert services[name]["image"] == "sinkd:local"
        assert services[name]["build"] == sinkd, name
    assert services["spamd"]["build"] == spamd and services["spamd"]["image"] == "sinkd-spamd:local"


def test_compose_scale_instances_store_into_the_one_postgresql_service_with_its_password() -> None:
    services = compose(SCALE)["services"]
    postgres = {k: interpolate(v) for k, v in services["postgres"]["environment"].items()}
    raw = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    # The password comes from the environment, with a default the file's comments say to change.
    assert re.fullmatch(r"\$\{SINKD_PG_PASSWORD:-[A-Za-z0-9-]+\}", raw), raw
    assert "CHANGE THE PASSWORD" in SCALE.read_text(encoding="utf-8")
    for name in ("sinkd-a", "sinkd-b"):
        location = scale_store(name)
        assert location.kind == "postgresql" and location.url is not None, name
        assert "***" in location.shown and postgres["POSTGRES_PASSWORD"] not in location.shown
        url = urlsplit(location.url)
        assert (url.hostname, url.port, url.path) == (
            "postgres",
            5432,
            f"/{postgres['POSTGRES_DB']}",
        )
        assert (url.username, url.password) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
        ), name
    assert scale_store("sinkd-a") == scale_store("sinkd-b")  # one database: one sink


def test_compose_scale_migrates_once_before_either_instance_serves(
    environment: pytest.MonkeyPatch,
) -> None:
    services = compose(SCALE)["services"]
    first, second = services["sinkd-a"], services["sinkd-b"]
    assert first["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert first["depends_on"]["spamd"] == {"condition": "service_healthy"}
    settings = [
        from_namespace(build_parser().parse_args(service["command"])) for service in (first, second)
    ]
    assert [s.migrate for s in settings] == [True, False]
    # The second starts once the first is ready, that is once the schema is in place.
    assert second["depends_on"] == {"sinkd-a": {"condition": "service_healthy"}}
    health = services["postgres"]["healthcheck"]["test"]
    assert health[:2] == ["CMD", "pg_isready"]
    assert health[health.index("-d") + 1] == "sinkd" and health[health.index("-U") + 1] == "sinkd"


def test_compose_scale_publishes_each_instance_on_the_loopback_on_ports_of_its_own() -> None:
    services = compose(SCALE)["services"]
    published = {
        name: [str(p).rsplit(":", 2) for p in services[name]["ports"]]
        for name in ("sinkd-a", "sinkd-b")
    }
    assert published["sinkd-a"] == [["127.0.0.1", "2525", "2525"], ["127.0.0.1", "8025", "8025"]]
    assert published["sinkd-b"] == [["127.0.0.1", "2526", "2525"], ["127.0.0.1", "8026", "8025"]]
    for name in ("postgres", "spamd"):  # reachable inside the compose network only
        assert "ports" not in services[name], name
    for name in ("sinkd-a", "sinkd-b"):  # each answers for its own name (docs/security.md)
        assert services[name]["environment"]["SINKD_HTTP_ALLOWED_HOSTS"] == name


def test_compose_scale_healthchecks_and_volumes_are_complete() -> None:
    data = compose(SCALE)
    for name, service in data["services"].items():
        health = service["healthcheck"]
        assert health["test"][0] == "CMD", name
        assert {"interval", "timeout", "retries", "start_period"} <= set(health), name
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+(ms|s|m)", health[key]), (name, key)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in data["volumes"] or source == "./profiles", (name, volume)
    assert "postgres-data:/var/lib/postgresql/data" in data["services"]["postgres"]["volumes"]
    for name in ("sinkd-a", "sinkd-b"):
        volumes = data["services"][name]["volumes"]
        assert f"{name}-data:/data" in volumes and "./profiles:/etc/sinkd/profiles:ro" in volumes


def test_the_image_installs_the_postgresql_extra_that_a_postgresql_store_needs() -> None:
    run = " ".join(a for k, a in instructions(DOCKER / "Dockerfile") if k == "RUN")
    assert re.search(r'pip install [^&]*"\./\[postgresql\]"', run), run
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "postgresql" in extras["project"]["optional-dependencies"]
