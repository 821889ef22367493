"""A private Postfix configured as a *filtering gateway*, and an SMTP client that records its
replies stage by stage: the ground truth the Postfix importer (issue 20) is compared with.

``PostfixGateway(policy={...}, tables={...}).start_gateway()`` builds a private instance with
the process management of tests/postfix_relay.py (its own directory, ``postfix -c``, the
maillog, ``postfix stop`` and the leftover check), but a different main.cf: it accepts mail for
``GATEWAY_DOMAIN`` (``relay_domains`` + ``permit_auth_destination``) and hands every accepted
message to the ``discard`` transport, so nothing leaves the machine and nothing is stored.
``policy`` is the part under test: main.cf parameters (restriction lists, ``smtpd_delay_reject``,
``header_checks``, ``message_size_limit`` ...) merged over the frame; ``tables`` are files
written into the instance's configuration directory, which a policy names as
``texthash:$config_directory/NAME`` (Postfix expands ``$config_directory`` itself). ``hash:``
tables are compiled with ``postmap`` (``postmap_tables``). The map types available are the
package's: ``postconf -m`` here lists cidr, regexp, texthash, hash, btree, inline, static ...
but not ``pcre`` (the separate ``postfix-pcre`` package).

``send(port, message, ...)`` speaks SMTP to it and returns an ``Outcome``: every reply
(greeting, EHLO, XCLIENT, MAIL, RCPT, DATA, end-of-data) with code, enhanced status code and
text, and the stage at which the transaction was refused or accepted. XCLIENT (the frame
authorizes it from loopback, postconf(5) ``smtpd_authorized_xclient_hosts``) lets a test
present any client address and name to the client restrictions; its reply is the greeting of
the new session (XCLIENT_README), so it is recorded as stage "connect": with
``smtpd_delay_reject = no`` a client restriction refuses there, as it does in the greeting of a
plain connection.

What this module must not do: judge anything itself or know sinkd. It only reports what Postfix
answered; the tests assert those answers as observed.
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pytest

from tests.postfix_relay import PostfixRelay

GATEWAY_DOMAIN = "corp.example"
GATEWAY_HOSTNAME = "gateway.test"
SMTP_TIMEOUT = 15.0
POSTMAP_TIMEOUT = 10.0

Stage = Literal["connect", "helo", "mail", "rcpt", "data", "end-of-data"]

# The frame: a private instance that delivers nothing (postconf(5) mydestination empty, local
# delivery an error) and discards what it accepts (discard(8)). A policy may override the
# filtering parameters; the keys in FIXED keep the instance private and are refused.
FRAME: dict[str, str] = {
    "compatibility_level": "3.6",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "myhostname": GATEWAY_HOSTNAME,
    "mydomain": GATEWAY_HOSTNAME,
    "myorigin": GATEWAY_HOSTNAME,
    "mydestination": "",
    "local_recipient_maps": "",
    "local_transport": "error:5.1.1 local delivery is disabled in this test gateway",
    "alias_maps": "",
    "alias_database": "",
    "biff": "no",
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "mynetworks": "127.0.0.0/8",
    "relay_domains": GATEWAY_DOMAIN,
    "relay_recipient_maps": "",
    "relay_transport": "discard:accepted by the test gateway",
    "default_transport": "discard:accepted by the test gateway",
    "relayhost": "",
    "smtpd_relay_restrictions": "permit_auth_destination, reject",
    "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
    "smtpd_tls_security_level": "none",
    "smtputf8_enable": "no",
}
FIXED = (
    "config_directory",
    "queue_directory",
    "data_directory",
    "maillog_file",
    "maillog_file_prefixes",
    "inet_interfaces",
    "relay_transport",
    "default_transport",
    "local_transport",
)

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?: |$)")


@dataclasses.dataclass(frozen=True)
class Reply:
    """One SMTP reply: code, enhanced status code (RFC 3463; "" when absent) and the text
    after it, multi-line replies joined with newlines."""

    stage: Stage
    code: int
    enhanced: str
    text: str

    @classmethod
    def parse(cls, stage: Stage, code: int, raw: bytes | str) -> Reply:
        """smtplib's ``(code, text)``: the lines of a multi-line reply, codes removed, each
        still starting with the enhanced code, which Postfix repeats on every line."""
        lines = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).split("\n")
        match = _ENHANCED.match(lines[0])
        enhanced = match.group(1) if match else ""
        if enhanced:
            prefix = re.compile(rf"^{re.escape(enhanced)}(?: |$)")
            lines = [prefix.sub("", line, count=1) for line in lines]
        return cls(stage, code, enhanced, "\n".join(lines))

    def __str__(self) -> str:
        return f"{self.stage}: {self.code} {self.enhanced} {self.text}".replace("  ", " ")


@dataclasses.dataclass
class Outcome:
    """Every reply of one transaction, in order, and where it ended: ``stage`` is the stage
    whose reply refused the message (4xx/5xx; at RCPT only when every recipient was refused),
    or "end-of-data" with ``accepted`` when the final reply was 2xx."""

    replies: list[Reply]
    stage: Stage
    accepted: bool

    @property
    def final(self) -> Reply:
        """The reply that decided: the refusing one, or the end-of-data 250."""
        deciding = [r for r in self.replies if r.stage == self.stage]
        refused = [r for r in deciding if r.code >= 400]
        return (refused or deciding)[-1]

    @property
    def queue_id(self) -> str:
        """The Postfix queue id of an accepted message ("250 2.0.0 Ok: queued as ID"), the
        key of its maillog lines (a header_checks DISCARD, WARN or HOLD is only seen there)."""
        match = re.search(r"queued as (\S+)", self.final.text) if self.accepted else None
        assert match is not None, f"not accepted with a queue id:\n{self}"
        return match.group(1)

    def at(self, stage: Stage) -> list[Reply]:
        return [r for r in self.replies if r.stage == stage]

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.replies)


def send(
    port: int,
    message: bytes,
    *,
    sender: str,
    recipients: Sequence[str],
    helo: str = "client.example",
    xclient: Mapping[str, str] | None = None,
    declare_size: bool = False,
) -> Outcome:
    """One SMTP transaction with the gateway on 127.0.0.1:``port``, stopping at the first
    refusing stage (then QUIT); see ``Outcome``. ``xclient`` attributes (ADDR, NAME, HELO ...)
    are sent with XCLIENT after EHLO, followed by a new EHLO as the protocol requires
    (Postfix XCLIENT_README). ``declare_size`` adds ``SIZE=`` to MAIL FROM (RFC 1870).

    The message goes through ``smtplib.SMTP.data``, which dot-stuffs it and turns bare CR and
    LF into CRLF: a test of bare line endings needs a client of its own."""
    replies: list[Reply] = []
    client = smtplib.SMTP(timeout=SMTP_TIMEOUT)

    def done(stage: Stage, accepted: bool = False) -> Outcome:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
        return Outcome(replies, stage, accepted)

    def step(stage: Stage, code: int, raw: bytes | str) -> bool:
        replies.append(Reply.parse(stage, code, raw))
        return code < 400

    try:
        if not step("connect", *client.connect("127.0.0.1", port)):
            return done("connect")
        if not step("helo", *client.ehlo(helo)):
            return done("helo")
        if xclient:
            attributes = " ".join(f"{k}={v}" for k, v in xclient.items())
            # The reply to XCLIENT is the new session's greeting (XCLIENT_README).
            if not step("connect", *client.docmd("XCLIENT", attributes)):
                return done("connect")
            if not step("helo", *client.ehlo(helo)):
                return done("helo")
        options = [f"SIZE={len(message)}"] if declare_size else []
        if not step("mail", *client.mail(sender, options)):
            return done("mail")
        accepted_rcpt = [step("rcpt", *client.rcpt(r)) for r in recipients]
        if not any(accepted_rcpt):
            return done("rcpt")
        try:
            code, raw = client.data(message)
        except smtplib.SMTPDataError as refused:  # DATA itself answered other than 354
            step("data", refused.smtp_code, refused.smtp_error)
            return done("data")
        return done("end-of-data", step("end-of-data", code, raw))
    except smtplib.SMTPServerDisconnected as closed:
        client.close()
        pytest.fail(f"the gateway closed the connection ({closed}); replies so far:\n{replies}")


class PostfixGateway(PostfixRelay):
    """A private Postfix filtering gateway; see the module docstring.

    ``with PostfixGateway(policy=..., tables=...) as gateway: gateway.start_gateway()``; then
    ``send(gateway.smtp_port, ...)`` and read ``gateway.maillog``.
    """

    def __init__(
        self,
        *,
        policy: Mapping[str, str] | None = None,
        tables: Mapping[str, str] | None = None,
        postmap_tables: Sequence[str] = (),
        hostname: str = GATEWAY_HOSTNAME,
    ) -> None:
        super().__init__(hostname=hostname)
        self.policy = dict(policy or {})
        self.tables = dict(tables or {})
        self.postmap_tables = tuple(postmap_tables)
        fixed = sorted(set(self.policy) & set(FIXED))
        if fixed:
            raise ValueError(f"the gateway's policy may not set {', '.join(fixed)}")
        unknown = sorted(set(self.postmap_tables) - set(self.tables))
        if unknown:
            raise ValueError(f"postmap_tables names tables not given: {', '.join(unknown)}")

    def __enter__(self) -> PostfixGateway:
        return self

    def start_gateway(self) -> PostfixGateway:
        """Build and start the instance; return once its smtpd accepts connections."""
        # The relay's start() does the work; its relay target is unused here (the frame's
        # transports are discard:), so any address will do.
        self.start(relay_to=("127.0.0.1", 9))
        return self

    def main_cf(self) -> str:
        """The main.cf written: the frame, then the policy's parameters over it."""
        merged = {
            **FRAME,
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.maillog_path),
            "maillog_file_prefixes": str(self._root),
            **self.policy,
        }
        lines = ["# A private Postfix filtering gateway (tests/support/postfix_gateway.py)."]
        lines += [f"{key} = {value}" for key, value in merged.items()]
        return "\n".join(lines) + "\n"

    def _layout(
        self, relay_to: tuple[str, int], reject: tuple[str, ...], defer: tuple[str, ...]
    ) -> None:
        # The relay's layout (directories, ownership), then this gateway's main.cf and tables
        # in place of the relay's; relay_to, reject and defer are the relay's and unused.
        super()._layout(relay_to, reject, defer)
        (self.config_dir / "recipient_access").unlink()
        (self.config_dir / "main.cf").write_text(self.main_cf())
        for name, text in self.tables.items():
            (self.config_dir / name).write_text(text)
        for name in self.postmap_tables:
            self._postmap(self.config_dir / name)

    def _postmap(self, table: Path) -> None:
        """``postmap hash:TABLE`` with this instance's configuration (postmap(1))."""
        postmap = str(Path(self._postfix).with_name("postmap"))
        result = subprocess.run(
            [postmap, "-c", str(self.config_dir), f"hash:{table}"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
            timeout=POSTMAP_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"postmap {table} failed: {result.stdout}{result.stderr}")
