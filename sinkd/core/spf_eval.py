"""SPF's ``check_host()`` (RFC 7208 §4) over the injected ``Resolver``, by pyspf 2.0.14.

Owns running pyspf, the reference implementation that passes the OpenSPF RFC 7208 suite
(``tests/core/spf/``), against our async ``Resolver`` instead of its own DNS client. pyspf is
synchronous and resolves through the module global ``spf.DNSLookup``, so each check runs in a
worker thread (``asyncio.to_thread``) and ``spf.DNSLookup`` is set once, at import, to a
dispatcher that finds the calling thread's session (resolver, event loop, deadline) in a
``threading.local`` and resolves through ``asyncio.run_coroutine_threadsafe`` on that loop. A
thread without a session (anyone else calling pyspf in this process) gets pyspf's own lookup.

When every answer the evaluation needs is already at hand (offline fixtures, answers the
caching resolver holds: a resolver with ``answer_now``, see ``AnswersNow``), the check runs on
the calling thread instead: no worker, no round trips to the loop, the same session logic and
so the same result. The first question that would have to wait stops that attempt (nothing it
did is kept) and the check runs in its worker as before, with its deadline.

Every DNS wait is bounded by the check's deadline, so a worker never outlives ``timeout`` by
more than one scheduling delay; a TIMEOUT, SERVFAIL or REFUSED answer, the deadline and an
abandoned check are all ``temperror`` (RFC 7208 §2.6.6, §4.6.4), never an exception. A live
timeout or the deadline also names the lookup in ``SpfResult.unanswered`` (the check is
unavailable, not judged). An ``UNKNOWN`` answer (offline DNS without data for the name) at any
step of the evaluation, ``include``/``redirect``/``a``/``mx``/``exists``/``ptr`` included,
stops it and makes the result ``none`` with the names in ``SpfResult.unknown``: without the
data no result can be known, and it is never read as "that domain does not exist".

Besides ``v=spf1`` (RFC 7208) it selects Sender ID records (RFC 4406 §3): ``record_prefix``
``("spf2.0/pra",)`` takes the one ``spf2.0/...`` record whose scope list holds ``pra``, at the
top and at every ``include``/``redirect``; a ``"v=spf1"`` after ``spf2.0`` prefixes is the
RFC 4406 §3.4 fallback, used only when the domain has no ``spf2.0`` record at all.

Pure: no sockets, no files; DNS only through the resolver it is given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, cast, get_args, runtime_checkable

import spf

from sinkd.core.ports import DnsAnswer, Rdata, RecordType, Resolver

__all__ = [
    "AnswersNow",
    "Identity",
    "SpfResult",
    "SpfResultCode",
    "check_host",
    "is_checkable_domain",
]

SpfResultCode: TypeAlias = Literal[
    "pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"
]
Identity: TypeAlias = Literal["mfrom", "helo", "pra"]

_RESULTS: frozenset[str] = frozenset(get_args(SpfResultCode))
_QUERY_TYPES: frozenset[str] = frozenset(get_args(RecordType))
# pyspf's pre-RFC 7208 names for the same results (spf.RESULTS).
_OLD_NAMES = {"unknown": "permerror", "error": "temperror"}
_ERROR_PREFIXES = ("SPF Temporary Error: ", "SPF Permanent Error: ")


@dataclass(frozen=True, slots=True)
class SpfResult:
    """The outcome of one ``check_host()``.

    ``explanation`` is the domain's ``exp=`` text for fail (RFC 7208 §6.2) or pyspf's default
    sentence for the result; for errors it says what went wrong. ``mechanism`` is the term of
    the top-level record (after redirects) that matched; None when none did. ``lookups`` counts
    the DNS-querying terms (RFC 7208 §4.6.4); ``record`` is the policy record first fetched.
    """

    result: SpfResultCode
    explanation: str
    mechanism: str | None
    lookups: int
    record: str | None
    domain: str = ""  # the <domain> checked: the sender's domain part, or the HELO name
    nxdomain: bool = False  # that domain does not exist (its TXT lookup said NXDOMAIN)
    # How long the result holds: the smallest TTL of the DNS answers it rests on (RFC 2181
    # §8, RFC 2308 §5 for negative ones); 0 when any answer had none or nothing was asked.
    ttl: int = 0
    # Names offline DNS had no data for: the result ("none") is not a judgement then.
    unknown: tuple[str, ...] = ()
    # Lookups live DNS did not answer in time: the temperror is sinkd's, not the sender's.
    unanswered: tuple[str, ...] = ()


# --- the DNS dispatcher ----------------------------------------------------------------------


@runtime_checkable
class AnswersNow(Protocol):
    """A resolver that can tell, without waiting, the answer ``query`` would give: the answer,
    or None when getting it means waiting (a live lookup). ``sinkd.lookups.dns``'s fixture,
    overlay and caching resolvers have it; a resolver without it is always asked in a worker."""

    def answer_now(self, name: str, rdtype: RecordType) -> DnsAnswer | None: ...


_AnswerNow: TypeAlias = Callable[[str, RecordType], DnsAnswer | None]


def answers_now(resolver: object) -> _AnswerNow | None:
    """The resolver's ``answer_now`` (``AnswersNow``), or None. Not ``isinstance`` on the
    protocol: a runtime protocol check costs ~30 us a call on Python 3.11."""
    method = getattr(resolver, "answer_now", None)
    # The type as a string: subscribing Callable at run time costs a few us a call.
    return cast("_AnswerNow", method) if callable(method) else None


class _WouldBlock(spf.TempError):  # type: ignore[misc]  # pyspf ships no type hints
    """An inline check needs an answer that is not at hand: stop it, run it in a worker."""


@dataclass
class _Session:
    """One check's way back to the event loop, as seen from its worker thread."""

    resolver: Resolver
    loop: asyncio.AbstractEventLoop
    deadline: float  # time.monotonic() value
    timeout: float
    abandoned: threading.Event = field(default_factory=threading.Event)
    in_flight: concurrent.futures.Future[DnsAnswer] | None = None
    nxdomain: set[str] = field(default_factory=set)  # names whose TXT lookup said NXDOMAIN
    lock: threading.Lock = field(default_factory=threading.Lock)
    ttl: int | None = None  # the smallest TTL of the answers so far (None: nothing asked)
    unknown: list[str] = field(default_factory=list)  # names offline DNS had no data for
    unanswered: list[str] = field(default_factory=list)  # lookups live DNS did not answer
    explaining: bool = False  # fetching the exp= text, which decides nothing (RFC 7208 §6.2)
    # Inline (on the calling thread): the resolver's ``answer_now``; None in a worker thread.
    answer_now: Callable[[str, RecordType], DnsAnswer | None] | None = None
    # An inline check asked for an answer that was not at hand: its result is void. A flag, not
    # only the exception, because pyspf swallows every exception around exp= (``except: pass``).
    blocked: bool = False

    def abandon(self) -> None:
        """Called from the loop when the awaiting task goes away: wake the worker now."""
        self.abandoned.set()
        with self.lock:
            if self.in_flight is not None:
                self.in_flight.cancel()

    def lookup(self, name: str, qtype: str) -> list[tuple[tuple[str, str], object]]:
        if qtype not in _QUERY_TYPES:
            return []  # type 99 "SPF" and the like: RFC 7208 §3.1 looks in TXT only
        if self.blocked:
            raise _WouldBlock("SPF check continues in a worker")
        if self.abandoned.is_set():
            raise spf.TempError("SPF check abandoned")
        name = name.rstrip(".").lower()
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.unanswered.append(name)
            raise spf.TempError(f"DNS timeout: the check ran out of its {self.timeout:g} s")
        answer = self._ask(name, cast(RecordType, qtype), remaining)
        self.ttl = answer.ttl if self.ttl is None else min(self.ttl, answer.ttl)
        if answer.unknown:
            if self.explaining:
                return []  # RFC 7208 §6.2: no explanation record, as if exp= were not given
            if name not in self.unknown:
                self.unknown.append(name)
            raise spf.TempError(f"no DNS data for {name} {qtype}")  # stops the evaluation
        if answer.temporary:
            if answer.unanswered:
                self.unanswered.append(name)
            raise spf.TempError(f"DNS {answer.rcode} for {name} {qtype}")
        if answer.rcode == "NXDOMAIN" and qtype == "TXT":
            self.nxdomain.add(name)
        return [((name, qtype), value) for value in _to_pyspf(qtype, answer.records)]

    def _ask(self, name: str, qtype: RecordType, remaining: float) -> DnsAnswer:
        if self.answer_now is not None:
            return self._ask_now(self.answer_now, name, qtype)
        if self.loop.is_closed():
            raise spf.TempError("DNS unavailable: the event loop has stopped")
        question = _ask_on_loop(self.resolver, name, qtype)
        try:
            future = asyncio.run_coroutine_threadsafe(question, self.loop)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for this check any more
            question.close()  # never started: closed, so that no "never awaited" warning follows
            raise spf.TempError("DNS unavailable: the event loop has stopped") from None
        with self.lock:
            self.in_flight = future
        if self.abandoned.is_set():
            future.cancel()
        try:
            return future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            future.cancel()
            self.unanswered.append(name)
            raise spf.TempError(
                f"DNS timeout for {name} {qtype}: the check ran out of its {self.timeout:g} s"
            ) from None
        except concurrent.futures.CancelledError:
            raise spf.TempError("SPF check abandoned") from None
        except Exception as exc:  # a resolver must not raise; if it does, it is DNS trouble
            raise spf.TempError(f"DNS error for {name} {qtype}: {exc}") from None
        finally:
            with self.lock:
                self.in_flight = None

    def _ask_now(
        self,
        answer_now: Callable[[str, RecordType], DnsAnswer | None],
        name: str,
        qtype: RecordType,
    ) -> DnsAnswer:
        try:
            answer = answer_now(name, qtype)
        except Exception as exc:  # as ``_ask`` reads a resolver that raises: DNS trouble
            raise spf.TempError(f"DNS error for {name} {qtype}: {exc}") from None
        if answer is None:
            self.blocked = True
            raise _WouldBlock(f"{name} {qtype} needs a lookup: SPF check continues in a worker")
        return answer


async def _ask_on_loop(resolver: Resolver, name: str, qtype: RecordType) -> DnsAnswer:
    """The question, asked from inside the event loop (the resolver is called there too)."""
    return await resolver.query(name, qtype)


def _to_pyspf(qtype: str, records: Iterable[Rdata]) -> list[object]:
    """Our record data as pyspf's drivers give it: TXT a tuple of bytes chunks, A/AAAA the
    address text, MX (preference, exchange), PTR/CNAME the target name."""
    out: list[object] = []
    for rdata in records:
        if qtype == "TXT":
            chunks = (rdata,) if isinstance(rdata, str | bytes) else rdata
            strings = tuple(c.encode("utf-8") if isinstance(c, str) else c for c in chunks)
            if strings and all(isinstance(c, bytes) for c in strings):
                out.append(strings)  # a TXT RR of no strings is invalid (RFC 1035 §3.3.14)
        elif qtype in ("A", "AAAA"):
            try:
                address = ipaddress.ip_address(str(rdata))
            except ValueError:
                continue
            if address.version == (4 if qtype == "A" else 6):
                out.append(str(address))
        elif qtype == "MX":
            if isinstance(rdata, tuple) and len(rdata) == 2:
                preference, exchange = rdata
                out.append((int(preference), str(exchange).rstrip(".")))
        else:
            out.append(str(rdata).rstrip("."))
    return out


_local = threading.local()
_install_lock = threading.Lock()
_pyspf_lookup: Any = None


def _dispatch(name: str, qtype: str, strict: object = True, timeout: object = None) -> Any:
    """``spf.DNSLookup``: this thread's session's resolver, else pyspf's own lookup."""
    session: _Session | None = getattr(_local, "session", None)
    if session is None:
        return _pyspf_lookup(name, qtype, strict, timeout)
    return session.lookup(name, qtype)


def _install() -> None:
    """Point pyspf's DNS hook at the dispatcher, once per process."""
    global _pyspf_lookup
    with _install_lock:
        if spf.DNSLookup is not _dispatch:
            _pyspf_lookup = spf.DNSLookup
            spf.DNSLookup = _dispatch


_install()


# --- record selection ------------------------------------------------------------------------


def _version(text: bytes) -> bytes:
    return text.split(b" ", 1)[0].lower()


def _matches(text: bytes, prefix: str) -> bool:
    """Does the record ``text`` start with the version ``prefix``?

    ``v=spf1`` is followed by a space or ends the record (RFC 7208 §4.5); ``spf2.0/SCOPE``
    matches a ``spf2.0/...`` record whose comma-separated scopes include SCOPE (RFC 4406 §3.3).
    """
    version = _version(text)
    wanted = prefix.lower().encode("ascii")
    if b"/" in wanted and version.startswith(b"spf2.0/"):
        scope = wanted.partition(b"/")[2]
        return scope in version.partition(b"/")[2].split(b",")
    return version == wanted


def select_record(texts: Sequence[bytes], prefixes: Sequence[str]) -> bytes | None:
    """The one policy record among a name's TXT strings, by the first prefix that has any.

    More than one record for a prefix is a permerror (RFC 7208 §4.5; RFC 4406 §3.4). A
    ``v=spf1`` prefix after ``spf2.0`` ones is skipped when the name has any ``spf2.0`` record
    (RFC 4406 §3.4: v=spf1 counts as ``spf2.0/mfrom,pra`` only when no spf2.0 record exists).
    """
    tried_spf2 = False
    for prefix in prefixes:
        if (
            prefix.lower() == "v=spf1"
            and tried_spf2
            and any(_version(t).startswith(b"spf2.0/") for t in texts)
        ):
            return None
        tried_spf2 = tried_spf2 or prefix.lower().startswith("spf2.0/")
        found = [t for t in texts if _matches(t, prefix)]
        if len(found) > 1:
            raise spf.PermError(f"Two or more {prefix} records found.")
        if found:
            return found[0]
    return None


class _Query(spf.query):  # type: ignore[misc]  # pyspf ships no type hints
    """pyspf's query with our record selection, the first record kept and RFC 7208 §5.5's
    "a DNS error on one PTR name skips that name"."""

    def __init__(self, prefixes: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefixes = tuple(prefixes)
        self.first_record: str | None = None
        self.fetched = False

    def dns_spf(self, domain: str) -> str | None:
        # RFC 7208 §4.3: a malformed domain has no record (pyspf's own check).
        for label in domain.split("."):
            if not label or len(label) > 63:
                return None
        chosen = select_record(self.dns_txt(domain), self.prefixes)
        text = None if chosen is None else spf.to_ascii(chosen)
        if not self.fetched:
            self.fetched, self.first_record = True, text
        if text is None:
            return None
        # pyspf evaluates "v=spf1 <terms>": a Sender ID record has the same terms (RFC 4406 §3).
        terms = text.split(" ", 1)[1] if " " in text else ""
        return f"v=spf1 {terms}" if terms else "v=spf1"

    def get_explanation(self, spec: str) -> str | None:
        session: _Session | None = getattr(_local, "session", None)
        if session is not None:
            session.explaining = True
        try:
            explanation: str | None = super().get_explanation(spec)
            return explanation
        finally:
            if session is not None:
                session.explaining = False

    def validated_ptrs(self) -> list[str]:
        names = self.dns_ptr(self.i)[: spf.MAX_PTR]
        valid: list[str] = []
        for name in names:
            try:
                if self.cidrmatch(self.dns_a(name, self.A), self.cidrmax):
                    valid.append(name)
            except spf.TempError:
                continue  # RFC 7208 §5.5: "that domain name is skipped and the search continues"
        return valid


# --- check_host ------------------------------------------------------------------------------


def is_checkable_domain(domain: str) -> bool:
    """RFC 7208 §4.3: a multi-label domain name of valid labels (not an address literal)."""
    domain = domain.rstrip(".")
    if not domain or domain.startswith("[") or len(domain) > 253:
        return False
    try:
        ipaddress.ip_address(domain)
        return False
    except ValueError:
        pass
    labels = domain.split(".")
    return len(labels) > 1 and all(0 < len(label) <= 63 for label in labels)


def _evaluate(
    session: _Session,
    ip: str,
    sender: str,
    helo: str,
    prefixes: Sequence[str],
    default_explanation: str | None,
) -> tuple[str, str, str | None, int, str | None]:
    _local.session = session
    try:
        try:
            query = _Query(prefixes, i=ip, s=sender, h=helo, strict=True)
        except spf.PermError as exc:  # e.g. the client address does not parse
            return "permerror", f"SPF Permanent Error: {exc}", None, 0, None
        if default_explanation is not None:
            query.set_default_explanation(default_explanation)
        result, _code, explanation = query.check()
        return (
            str(result),
            str(explanation),
            query.mechanism,
            int(query.lookups),
            query.first_record,
        )
    finally:
        del _local.session


async def check_host(
    resolver: Resolver,
    ip: str,
    sender: str,
    helo: str,
    *,
    identity: Identity = "mfrom",
    record_prefix: Sequence[str] = ("v=spf1",),
    # Not asyncio.timeout: the bound must hold inside the worker thread, on each DNS wait.
    timeout: float = 20,  # noqa: ASYNC109
    nxdomain: Literal["none", "fail"] = "none",
    default_explanation: str | None = None,
) -> SpfResult:
    """RFC 7208 ``check_host(<ip>, <domain>, <sender>)`` for one identity.

    ``sender`` is the MAIL FROM address (``mfrom``; empty means ``postmaster@<helo>``, RFC 7208
    §2.4) or the PRA (``pra``); for ``helo`` it is ignored and ``postmaster@<helo>`` is checked
    (§2.3). A domain that is not a multi-label name (an address literal, one label, an empty
    label) gives ``none`` without any lookup (§4.3). ``timeout`` bounds the whole evaluation
    (§4.6.4 "at least 20 seconds"); ``nxdomain="fail"`` turns "that domain does not exist"
    into ``fail`` (Sender ID's PRA scope) instead of ``none``. ``default_explanation`` replaces
    pyspf's default text for fail, softfail and permerror.
    """
    if identity == "helo" or not sender:
        sender = f"postmaster@{helo}"
    local, at, domain = sender.rpartition("@")
    if not at:
        domain, sender = sender, f"postmaster@{sender}"
    elif not local:
        sender = f"postmaster@{domain}"  # RFC 7208 §4.3: an empty local-part is "postmaster"
    domain = domain.rstrip(".").lower()
    if not is_checkable_domain(domain):
        return SpfResult("none", "", None, 0, None, domain)
    loop = asyncio.get_running_loop()
    prefixes = tuple(record_prefix)
    outcome = None
    at_hand = answers_now(resolver)
    if at_hand is not None:
        # Every answer may be at hand (offline fixtures, cached answers): pyspf needs no worker
        # thread then, and ~0.1 ms of thread start and loop round trips per check is saved.
        session = _Session(resolver, loop, time.monotonic() + timeout, timeout, answer_now=at_hand)
        try:
            outcome = _evaluate(session, ip, sender, helo, prefixes, default_explanation)
        except _WouldBlock:  # pyspf let it through: the same as caught, the check is void
            session.blocked = True
        if session.blocked:
            outcome = None
    if outcome is None:
        session = _Session(resolver, loop, time.monotonic() + timeout, timeout)
        try:
            outcome = await asyncio.to_thread(
                _evaluate, session, ip, sender, helo, prefixes, default_explanation
            )
        except BaseException:  # cancelled: let the worker stop at once, not at the deadline
            session.abandon()
            raise
    result, explanation, mechanism, lookups, record = outcome
    result = _OLD_NAMES.get(result, result)
    for prefix in _ERROR_PREFIXES:  # pyspf's own, redundant beside the result
        explanation = explanation.removeprefix(prefix)
    if result not in _RESULTS:  # "ambiguous" exists only in pyspf's harsh mode (strict=2)
        result = "permerror"
    missing = domain in session.nxdomain
    unknown = tuple(session.unknown)
    if unknown:  # no data, no judgement: never fail, never "does not exist"
        result, mechanism, missing = "none", None, False
        explanation = f"no DNS data for {', '.join(unknown)}"
    elif result == "none" and missing and nxdomain == "fail":
        result, explanation = "fail", f"the domain {domain} does not exist"
    unanswered = tuple(session.unanswered) if result == "temperror" else ()
    return SpfResult(
        cast(SpfResultCode, result),
        explanation,
        mechanism,
        lookups,
        record,
        domain,
        missing,
        0 if unknown else session.ttl or 0,
        unknown,
        unanswered,
    )
