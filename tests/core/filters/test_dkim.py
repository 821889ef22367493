"""The dkim filter: every signature verified with keys from the injected resolver, RFC 8301 and
RFC 8463 on top of dkimpy, one finding per signature, and the profile's outcomes."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from sinkd.core.filters import MessageContext
from sinkd.core.filters import dkim as dkim_filter
from sinkd.core.filters.dkim import DkimFilter, DkimSpec, _load
from sinkd.core.message import parse
from sinkd.core.model import Action, Category, ClientIdentity, Envelope, Finding, Unjudged
from sinkd.core.ports import NO_DNS, DnsAnswer, Lookups, RecordType
from sinkd.core.profiles import ProfileSet
from sinkd.core.schema import CompileContext
from tests.support.paths import MESSAGES

DKIMPY_DATA = MESSAGES / "dkimpy"
ENVELOPE = Envelope(
    ClientIdentity(ip="192.0.2.10", helo="mail.shop.example"),
    "bounce@shop.example",
    ("bob@corp.example",),
)
MESSAGE = (
    b"From: Shop <news@shop.example>\r\n"
    b"To: Bob <bob@corp.example>\r\n"
    b"Subject: Spring sale\r\n"
    b"Date: Fri, 10 Apr 2026 10:00:00 +0000\r\n"
    b"Message-ID: <sale-1@shop.example>\r\n"
    b"\r\n"
    b"Everything is 20% off this week.\r\n"
    b"See you soon.\r\n"
)


class FakeResolver:
    """DNS from a dict; TXT strings are split into 255-octet character-strings as on the wire."""

    def __init__(self, zone: Mapping[tuple[str, str], str | DnsAnswer]) -> None:
        self.zone = dict(zone)
        self.queries: list[tuple[str, str]] = []

    # Whether answers are also given at once through ``answer_now`` (as the fixture and the
    # cache give them, ``sinkd.core.spf_eval.AnswersNow``); the autouse fixture sets it.
    answers_at_hand = False

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None:
        if not self.answers_at_hand:
            return None
        self.queries.append((name, rdtype))
        return self._answer(name, rdtype)

    async def query(self, name: str, rdtype: RecordType) -> DnsAnswer:
        self.queries.append((name, rdtype))
        return self._answer(name, rdtype)

    def _answer(self, name: str, rdtype: RecordType) -> DnsAnswer:
        entry = self.zone.get((name, rdtype))
        if entry is None:
            return DnsAnswer("NXDOMAIN")
        if isinstance(entry, DnsAnswer):
            return entry
        data = entry.encode()
        chunks = tuple(data[i : i + 255] for i in range(0, len(data), 255))
        return DnsAnswer("NOERROR", (chunks,), 300)


@pytest.fixture(autouse=True, params=[False, True], ids=["awaited", "at-hand"])
def answers_at_hand(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test twice: answers awaited, and answers the resolver has at hand (``answer_now``,
    as offline fixtures and cached answers are taken): the findings must not differ."""
    monkeypatch.setattr(FakeResolver, "answers_at_hand", request.param)
    return bool(request.param)


@dataclass(frozen=True)
class Key:
    private: bytes  # what dkim.sign takes
    record: str  # the TXT record of the selector
    algorithm: bytes


def rsa_key(bits: int) -> Key:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _rsa(key)


def _rsa(key: rsa.RSAPrivateKey) -> Key:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Key(private, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}", b"rsa-sha256")


def _probable_prime(bits: int) -> int:
    def is_prime(n: int) -> bool:
        for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
            if n % p == 0:
                return False
        d, s = n - 1, 0
        while d % 2 == 0:
            d, s = d // 2, s + 1
        for _ in range(32):
            x = pow(secrets.randbelow(n - 3) + 2, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(s - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                return False
        return True

    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if is_prime(candidate) and (candidate - 1) % 65537:
            return candidate


def rsa_512_key() -> Key:
    """cryptography refuses to generate keys under 1024 bits; build one from two primes."""
    p, q = _probable_prime(256), _probable_prime(256)
    e = 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    return _rsa(numbers.private_key())


def ed25519_key() -> Key:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Key(
        base64.b64encode(seed),
        f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}",
        b"ed25519-sha256",
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {
        "rsa2048": rsa_key(2048),
        "rsa1024": rsa_key(1024),
        "rsa512": rsa_512_key(),
        "ed25519": ed25519_key(),
    }


def sign(
    message: bytes,
    key: Key,
    *,
    selector: str = "s1",
    domain: str = "shop.example",
    algorithm: bytes | None = None,
    length: bool = False,
) -> bytes:
    header = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private,
        signature_algorithm=algorithm or key.algorithm,
        length=length,
        canonicalize=(b"relaxed", b"relaxed"),
    )
    assert isinstance(header, bytes)
    return header + message


CATALOGUE = ProfileSet().catalogue


def make_filter(**spec: Any) -> DkimFilter:
    return DkimFilter(
        DkimSpec.model_validate({"kind": "dkim", "name": "dkim", **spec}),
        CompileContext(lists={}, replies=CATALOGUE),
    )


async def check(
    raw: bytes, zone: Mapping[tuple[str, str], str | DnsAnswer], **spec: Any
) -> list[Finding]:
    resolver = FakeResolver(zone)
    ctx = MessageContext(ENVELOPE, parse(raw), Lookups(resolver=resolver))
    return await make_filter(**spec).check_message(ctx)


def key_zone(key: Key, selector: str = "s1", domain: str = "shop.example") -> dict[Any, Any]:
    return {(f"{selector}._domainkey.{domain}", "TXT"): key.record}


# --- results ----------------------------------------------------------------------------------


async def test_a_signature_with_an_rsa_2048_key_passes(keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]
    assert len(key.record) > 255  # the fake splits it: the filter must join the strings
    [finding] = await check(sign(MESSAGE, key), key_zone(key))
    assert finding.code == "DKIM_PASS"
    assert finding.category is Category.AUTHENTICATION
    assert finding.action is Action.NONE and finding.score == 0
    assert finding.reason == "The message carries a valid DKIM signature from shop.example."
    detail = finding.detail
    assert detail["domain"] == "shop.example"
    assert detail["selector"] == "s1"
    assert detail["algorithm"] == "rsa-sha256"
    assert detail["key_bits"] == 2048
    assert detail["body_length"] is None
    assert detail["error"] is None


async def test_an_ed25519_signature_passes_as_rfc_8463_defines_it(keys: dict[str, Key]) -> None:
    key = keys["ed25519"]
    [finding] = await check(sign(MESSAGE, key), key_zone(key))
    assert finding.code == "DKIM_PASS"
    assert finding.detail["algorithm"] == "ed25519-sha256"
    assert finding.detail["key_bits"] == 256


async def test_an_rsa_1024_key_is_the_smallest_that_still_passes(keys: dict[str, Key]) -> None:
    key = keys["rsa1024"]
    [finding] = await check(sign(MESSAGE, key), key_zone(key))
    assert finding.code == "DKIM_PASS"
    assert finding.detail["key_bits"] == 1024


async def test_an_rsa_512_key_fails_although_dkimpy_would_accept_it(keys: dict[str, Key]) -> None:
    key = keys["rsa512"]
    signed = sign(MESSAGE, key)
    # dkimpy alone, told to accept small keys, says the signature is good: the failure is ours.
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: key.record.encode(), minkey=512)
    [finding] = await check(signed, key_zone(key))
    assert finding.code == "DKIM_FAIL"
    assert finding.detail["key_bits"] == 512
    assert "RFC 8301 forbids keys under 1024 bits" in finding.detail["error"]
    assert finding.reason.startswith("The DKIM signature from shop.example does not verify: ")


async def test_rsa_sha1_fails_although_dkimpy_still_verifies_it(keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]
    signed = sign(MESSAGE, key, algorithm=b"rsa-sha1")
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: key.record.encode())
    [finding] = await check(signed, key_zone(key))
    assert finding.code == "DKIM_FAIL"
    assert finding.detail["algorithm"] == "rsa-sha1"
    assert finding.detail["error"] == "RFC 8301 forbids rsa-sha1"


async def test_a_profile_may_model_a_legacy_verifier_that_takes_sha1_and_small_keys(
    keys: dict[str, Key],
) -> None:
    sha1 = sign(MESSAGE, keys["rsa2048"], algorithm=b"rsa-sha1")
    [finding] = await check(sha1, key_zone(keys["rsa2048"]), accept_rsa_sha1=True)
    assert finding.code == "DKIM_PASS"
    small = sign(MESSAGE, keys["rsa512"])
    [finding] = await check(small, key_zone(keys["rsa512"]), min_rsa_bits=512)
    assert finding.code == "DKIM_PASS"


async def test_a_tampered_body_fails_with_a_body_hash_mismatch(keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]
    tampered = sign(MESSAGE, key).replace(b"20% off", b"90% off")
    [finding] = await check(tampered, key_zone(key))
    assert finding.code == "DKIM_FAIL"
    assert finding.detail["error"].endswith("(body hash mismatch)")


async def test_a_tampered_signed_header_fails(keys: dict[str, Key]) -> None:
    key = keys["ed25519"]
    tampered = sign(MESSAGE, key).replace(b"Subject: Spring sale", b"Subject: Winter sale")
    [finding] = await check(tampered, key_zone(key))
    assert finding.code == "DKIM_FAIL"
    assert finding.detail["error"].endswith("(signature mismatch)")


async def test_a_missing_key_is_a_permerror(keys: dict[str, Key]) -> None:
    [finding] = await check(sign(MESSAGE, keys["rsa2048"]), {})
    assert finding.code == "DKIM_PERMERROR"
    assert finding.detail["error"] == "no key published (s1._domainkey.shop.example does not exist)"


async def test_a_key_offline_dns_has_no_data_for_is_not_judged_never_a_missing_key(
    keys: dict[str, Key],
) -> None:
    ctx = MessageContext(ENVELOPE, parse(sign(MESSAGE, keys["rsa2048"])), Lookups(resolver=NO_DNS))
    # Even a profile that refuses DKIM permerrors and fails leaves an unjudged one alone.
    flt = make_filter(on={"permerror": {"action": "reject"}, "fail": {"action": "reject"}})
    [finding] = await flt.check_message(ctx)
    assert finding.code == "DKIM_NEUTRAL"
    assert finding.detail["result"] == "neutral"
    assert finding.unjudged is Unjudged.NO_DNS_DATA
    assert finding.detail["dns_names"] == ["s1._domainkey.shop.example"]
    assert (finding.action, finding.reply) == (Action.NONE, None)
    assert "could not be judged" in finding.reason and "--dns-zone FILE" in finding.reason
    assert "does not exist" not in finding.reason


async def test_a_key_lookup_live_dns_did_not_answer_is_unavailable(keys: dict[str, Key]) -> None:
    zone = {("s1._domainkey.shop.example", "TXT"): DnsAnswer("TIMEOUT", live=True)}
    [finding] = await check(
        sign(MESSAGE, keys["rsa2048"]), zone, on={"temperror": {"action": "tempfail"}}
    )
    assert finding.code == "DKIM_TEMPERROR"
    assert finding.unjudged is Unjudged.UNAVAILABLE
    assert (finding.action, finding.reply) == (Action.NONE, None)


@pytest.mark.parametrize("rcode", ["TIMEOUT", "SERVFAIL"])
async def test_a_key_lookup_that_times_out_or_fails_is_a_temperror(
    keys: dict[str, Key], rcode: Any
) -> None:
    zone = {("s1._domainkey.shop.example", "TXT"): DnsAnswer(rcode)}
    [finding] = await check(sign(MESSAGE, keys["rsa2048"]), zone)
    assert finding.code == "DKIM_TEMPERROR"
    assert finding.detail["error"] == f"key lookup failed ({rcode})"
    assert "could not be looked up right now" in finding.reason


async def test_without_a_resolver_every_signature_is_a_temperror(keys: dict[str, Key]) -> None:
    ctx = MessageContext(ENVELOPE, parse(sign(MESSAGE, keys["rsa2048"])), Lookups(resolver=None))
    [finding] = await make_filter().check_message(ctx)
    assert finding.code == "DKIM_TEMPERROR"
    assert "no DNS resolver" in finding.detail["error"]


async def test_by_default_dns_has_no_key_data_so_a_signature_is_not_judged(
    keys: dict[str, Key],
) -> None:
    # Lookups() is offline DNS without fixtures: no data for the key, which is not "no key".
    ctx = MessageContext(ENVELOPE, parse(sign(MESSAGE, keys["rsa2048"])), Lookups())
    [finding] = await make_filter().check_message(ctx)
    assert (finding.code, finding.unjudged) == ("DKIM_NEUTRAL", Unjudged.NO_DNS_DATA)


async def test_a_malformed_signature_is_a_permerror_without_any_lookup() -> None:
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=shop.example; s=s1; bh=AAAA\r\n" + MESSAGE
    resolver = FakeResolver({})
    ctx = MessageContext(ENVELOPE, parse(raw), Lookups(resolver=resolver))
    [finding] = await make_filter().check_message(ctx)
    assert finding.code == "DKIM_PERMERROR"
    assert finding.detail["domain"] == "shop.example"
    assert finding.detail["error"].startswith("malformed signature")
    assert resolver.queries == []


async def test_an_unknown_algorithm_is_a_permerror(keys: dict[str, Key]) -> None:
    signed = sign(MESSAGE, keys["rsa2048"]).replace(b"a=rsa-sha256", b"a=rsa-md5", 1)
    [finding] = await check(signed, key_zone(keys["rsa2048"]))
    assert finding.code == "DKIM_PERMERROR"
    assert "unknown signature algorithm" in finding.detail["error"]


async def test_a_revoked_key_is_a_permerror(keys: dict[str, Key]) -> None:
    zone = {("s1._domainkey.shop.example", "TXT"): "v=DKIM1; k=rsa; p="}
    [finding] = await check(sign(MESSAGE, keys["rsa2048"]), zone)
    assert finding.code == "DKIM_PERMERROR"
    assert "revoked" in finding.detail["error"]


async def test_a_key_of_the_wrong_type_is_a_permerror(keys: dict[str, Key]) -> None:
    [finding] = await check(sign(MESSAGE, keys["ed25519"]), key_zone(keys["rsa2048"]))
    assert finding.code == "DKIM_PERMERROR"
    assert finding.detail["error"] == "the key is of type rsa, the signature is ed25519-sha256"


async def test_a_key_restricted_to_other_hashes_is_a_permerror(keys: dict[str, Key]) -> None:
    zone = {("s1._domainkey.shop.example", "TXT"): keys["rsa2048"].record + "; h=sha1"}
    [finding] = await check(sign(MESSAGE, keys["rsa2048"]), zone)
    assert finding.code == "DKIM_PERMERROR"
    assert "(h=)" in finding.detail["error"]


async def test_two_signatures_give_two_findings_in_header_order(keys: dict[str, Key]) -> None:
    inner = sign(MESSAGE, keys["rsa2048"])
    both = sign(inner, keys["ed25519"], selector="esp", domain="esp.example")
    zone = {
        **key_zone(keys["rsa2048"]),
        ("esp._domainkey.esp.example", "TXT"): DnsAnswer("TIMEOUT"),
    }
    findings = await check(both, zone)
    assert [(f.code, f.detail["domain"]) for f in findings] == [
        ("DKIM_TEMPERROR", "esp.example"),
        ("DKIM_PASS", "shop.example"),
    ]


async def test_signatures_beyond_the_limit_are_not_checked(keys: dict[str, Key]) -> None:
    raw = MESSAGE
    for _ in range(3):
        raw = sign(raw, keys["ed25519"])
    findings = await check(raw, key_zone(keys["ed25519"]), max_signatures=2)
    assert [f.code for f in findings] == ["DKIM_PASS", "DKIM_PASS", "DKIM_PERMERROR"]
    assert findings[2].detail["skipped"] == 1


async def test_a_body_length_signature_is_flagged_with_the_unsigned_bytes(
    keys: dict[str, Key],
) -> None:
    key = keys["rsa2048"]
    appended = sign(MESSAGE, key, length=True) + b"Click here: http://evil.example/\r\n"
    [finding] = await check(appended, key_zone(key))
    assert finding.code == "DKIM_PASS"
    assert finding.detail["body_length"] == len(
        b"Everything is 20% off this week.\r\nSee you soon.\r\n"
    )
    assert finding.detail["unsigned_body_bytes"] == len(b"Click here: http://evil.example/\r\n")
    assert "are not covered by it" in finding.reason


async def test_ignore_l_tag_bodies_refuses_body_length_signatures(keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]
    [finding] = await check(
        sign(MESSAGE, key, length=True), key_zone(key), ignore_l_tag_bodies=True
    )
    assert finding.code == "DKIM_PERMERROR"
    assert "(l=)" in finding.detail["error"]
    [plain] = await check(sign(MESSAGE, key), key_zone(key), ignore_l_tag_bodies=True)
    assert plain.code == "DKIM_PASS"


async def test_an_unsigned_message_gets_dkim_none() -> None:
    [finding] = await check(MESSAGE, {})
    assert finding.code == "DKIM_NONE"
    assert finding.reason == "The message carries no DKIM signature."


# --- outcomes ---------------------------------------------------------------------------------


async def test_the_profile_sets_each_results_action_score_and_reply(keys: dict[str, Key]) -> None:
    key = keys["rsa2048"]
    on = {
        "pass": {"score": -0.5},
        "fail": {"action": "reject", "reply": "550 5.7.20 No passing DKIM signature found"},
        "temperror": {"action": "tempfail"},
    }
    [passed] = await check(sign(MESSAGE, key), key_zone(key), on=on)
    assert (passed.action, passed.score, passed.reply) == (Action.SCORE, -0.5, None)
    tampered = sign(MESSAGE, key).replace(b"soon", b"later")
    [failed] = await check(tampered, key_zone(key), on=on)
    assert failed.action is Action.REJECT
    assert failed.reply is not None
    assert (failed.reply.code, failed.reply.enhanced) == (550, "5.7.20")
    timeout = {("s1._domainkey.shop.example", "TXT"): DnsAnswer("TIMEOUT")}
    [deferred] = await check(sign(MESSAGE, key), timeout, on=on)
    assert deferred.action is Action.TEMPFAIL
    assert deferred.reply is not None and deferred.reply.code == 451


def test_the_spec_reads_pass_as_written_in_a_profile() -> None:
    spec = DkimSpec.model_validate({"kind": "dkim", "name": "dkim", "on": {"pass": {"score": -1}}})
    assert spec.on.of("pass").score == -1
    assert spec.on.of("fail").action is Action.NONE
    assert spec.model_dump(by_alias=True)["on"]["pass"]["score"] == -1


# --- dkimpy's own test vectors ----------------------------------------------------------------

# dkimpy's dkim/tests/test_dkim.py (dnsfunc5, dnsfunc6): the RFC 8463 ed25519 key and a defective
# RSA key (one character dropped from the base64).
BRISBANE = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
DEFECTIVE = (
    "k=rsa; p=MFwwDQYJKoZIhvNAQEBBQADSwAwSAJBANmBe10IgY+u7h3enWTukkqtUD5PR52T"
    "b/mPfjC0QJTocVBq6Za/PlzfV+Py92VaCak19F4WrbVTK5Gg5tW220MCAwEAAQ=="
)


async def test_dkimpys_rfc_8463_example_passes_both_its_signatures() -> None:
    raw = (DKIMPY_DATA / "rfc6376.signed.msg").read_bytes()
    zone = {
        ("brisbane._domainkey.football.example.com", "TXT"): BRISBANE,
        ("test._domainkey.football.example.com", "TXT"): (DKIMPY_DATA / "test.txt").read_text(),
    }
    findings = await check(raw, zone)
    assert [(f.code, f.detail["algorithm"], f.detail["key_bits"]) for f in findings] == [
        ("DKIM_PASS", "ed25519-sha256", 256),
        ("DKIM_PASS", "rsa-sha256", 1024),
    ]


async def test_dkimpys_message_under_a_defective_key_is_a_permerror() -> None:
    raw = (DKIMPY_DATA / "rfc6376.signed.rsa.msg").read_bytes()
    zone = {("test._domainkey.football.example.com", "TXT"): DEFECTIVE}
    [finding] = await check(raw, zone)
    assert finding.code == "DKIM_PERMERROR"
    assert finding.detail["error"].startswith("malformed key record")


async def test_a_large_message_is_verified_in_a_thread_with_the_same_results(
    keys: dict[str, Key], monkeypatch: pytest.MonkeyPatch
) -> None:
    threaded: list[str] = []
    real = asyncio.to_thread

    async def spy(function: Any, *args: Any) -> Any:
        threaded.append(function.__name__)
        return await real(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    body = b"".join(b"line %d of a long newsletter\r\n" % n for n in range(20_000))
    key = keys["rsa2048"]
    raw = sign(MESSAGE + body, key)
    assert len(raw) > 256 * 1024
    [finding] = await check(raw, key_zone(key))
    assert finding.code == "DKIM_PASS"
    assert threaded == ["_load", "_verify_all"]
    [tampered] = await check(raw.replace(b"line 19999", b"line 99999"), key_zone(key))
    assert tampered.code == "DKIM_FAIL"


# dkimpy is handed the header block alone and the body already normalized (``_load``): the
# header fields and the body it then holds must be exactly those of its own whole-message parse.
_SPLITS = [
    b"",
    b"\n",
    b"\r\n",
    b"A: b",
    b"A: b\r\n",
    b"A: b\r\n\r\n",
    b"A: b\n\nbody\nx\r\ny\r",
    b"A: b\r\r\n\r\nx\n\n\r\n",
    b"\r\nA: b\r\n",
    b"A: b\r\n c\r\nD: e\n\r\nbody\r\r\n\n",
    b"From x\r\nA: b\r\n\tfolded\r\n\r\nline 1\nline 2\r\n\r\n",
    b"A: b\r\n\r\n" + b"x" * 100 + b"\n\n\n",
]


@pytest.mark.parametrize("raw", _SPLITS)
def test_dkimpy_sees_the_same_header_and_body_when_handed_the_header_block_alone(
    raw: bytes,
) -> None:
    whole = dkim.DKIM(raw, minkey=0)
    split = _load(raw)
    assert split.headers == whole.headers
    assert split.body == whole.body or (not split.body and not whole.body)


def _cases(keys: dict[str, Key]) -> dict[str, tuple[bytes, dict[Any, Any]]]:
    rsa_key, ed_key = keys["rsa2048"], keys["ed25519"]
    signed = sign(MESSAGE, rsa_key)
    both = sign(sign(MESSAGE, rsa_key), ed_key, selector="esp", domain="esp.example")
    dotted = sign(MESSAGE, rsa_key, domain="shop.example.")
    return {
        "pass": (signed, key_zone(rsa_key)),
        "ed25519": (sign(MESSAGE, ed_key), key_zone(ed_key)),
        "body changed": (signed.replace(b"20% off", b"90% off"), key_zone(rsa_key)),
        "header changed": (
            signed.replace(b"Subject: Spring sale", b"Subject: Winter sale"),
            key_zone(rsa_key),
        ),
        "two signatures": (both, {**key_zone(rsa_key), **key_zone(ed_key, "esp", "esp.example")}),
        "d= with a final dot": (dotted, key_zone(rsa_key)),
        "l=": (sign(MESSAGE, rsa_key, length=True) + b"appended\r\n", key_zone(rsa_key)),
    }


CASES = [
    "pass",
    "ed25519",
    "body changed",
    "header changed",
    "two signatures",
    "d= with a final dot",
    "l=",
]


@pytest.mark.parametrize("case", CASES)
async def test_each_signature_is_judged_as_dkimpys_own_verify_judges_it(
    keys: dict[str, Key], case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The filter reuses its header prep and parsed key instead of dkimpy's ``verify()``
    doing both again: the findings must be those ``verify()`` itself gives."""
    raw, zone = _cases(keys)[case]
    reused = await check(raw, zone)

    def own_verify(verifier: Any, sig: Any, dnsfunc: Any) -> bool:
        return bool(verifier.verify(sig.index, dnsfunc=dnsfunc))

    monkeypatch.setattr(dkim_filter, "_verify_prepared", own_verify)
    assert await check(raw, zone) == reused
