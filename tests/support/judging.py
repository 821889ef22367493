"""Judging without a socket: a test profile compiled from a YAML body, a staged transaction to
drive step by step, and one whole SMTP transaction (MAIL, RCPT..., DATA) through the engine,
returning every verdict it gave."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sinkd.core.engine import Pipeline, Router, Transaction, compile_profile
from sinkd.core.model import ClientIdentity, Verdict
from sinkd.core.ports import NO_LOOKUPS, Lookups
from sinkd.core.profiles import ProfileSet

HEAD = """\
schema: sinkd.profile/v1
id: {id}
title: Test profile
models:
  - {{what: "a test", source: "the test suite"}}
"""


def compile_yaml(tmp_path: Path, body: str, profile_id: str = "test") -> Pipeline:
    """The profile ``HEAD`` + ``body`` (dedented), written to ``tmp_path`` and compiled."""
    path = tmp_path / f"{profile_id}.yaml"
    path.write_text(HEAD.format(id=profile_id) + textwrap.dedent(body), encoding="utf-8")
    return compile_profile(ProfileSet([tmp_path]).resolve(str(path)))


def transaction(
    target: Router | Pipeline,
    *,
    client_ip: str = "203.0.113.5",
    helo: str | None = None,
    lookups: Lookups = NO_LOOKUPS,
) -> Transaction:
    """A staged transaction (MAIL, RCPT..., DATA) for tests that drive it step by step; verdict
    ids count id1, id2, ..."""
    router = Router(target) if isinstance(target, Pipeline) else target
    ids = (f"id{n}" for n in itertools.count(1))
    return Transaction(router, ClientIdentity(ip=client_ip, helo=helo), lambda: next(ids), lookups)


async def deliver(
    target: Router | Pipeline,
    raw: bytes,
    *,
    rcpts: Sequence[str] = ("bob@corp.example",),
    mail_from: str = "alice@sender.example",
    client_ip: str = "203.0.113.5",
    helo: str | None = None,
    lookups: Lookups = NO_LOOKUPS,
    declare_size: bool = False,
) -> list[Verdict]:
    """Every verdict of one transaction: a refusal at MAIL, refusals at RCPT, then the DATA
    command's refusal or the end of DATA's verdicts (if a recipient was taken).
    ``declare_size`` sends ``len(raw)`` as MAIL's SIZE."""
    tx = transaction(target, client_ip=client_ip, helo=helo, lookups=lookups)
    refused = await tx.mail(mail_from, len(raw) if declare_size else None)
    if refused is not None:
        return [refused]
    verdicts = [v for r in rcpts if (v := await tx.rcpt(r)) is not None]
    if tx.recipients:
        verdicts += await tx.data_command() or await tx.data(raw)
    return verdicts


async def judge(target: Router | Pipeline, raw: bytes, **kwargs: Any) -> Verdict:
    """The one verdict of one transaction: ``deliver``'s, asserted to be exactly one."""
    verdicts = await deliver(target, raw, **kwargs)
    assert len(verdicts) == 1, verdicts
    return verdicts[0]
