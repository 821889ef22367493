"""A typed, synchronous Python client for sinkd's HTTP API (``/api/v1/...``).

Owns the HTTP conversation with a running sinkd: requests, turning answers into typed values
(``Message``, ``Finding``, ...; the one JSON shape of docs/judging.md) and error answers into
``HttpApiError`` (no answer at all: ``HttpApiUnreachable``). The pytest plugin, ``sinkd readyz``
and users' own scripts use it. It holds no policy and never imports the server: it works the
same against a sinkd in this process, in another one or in a container.

Built on httpx (a main dependency for this): timeouts per request, connection reuse and a
streaming body for the event stream, which the standard library's ``http.client`` gives only
with hand-made socket handling.

The event stream (``events()``) is read by a background thread into a queue, so that
``EventStream.get(timeout)`` waits on the queue with an exact deadline, independent of the
server's heartbeat; closing the stream shuts its socket down, which wakes that thread at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from sinkd.errors import HttpApiError, HttpApiUnreachable
from sinkd.services.settings import DEFAULT_URL

log = logging.getLogger(__name__)

API = "/api/v1"
DEFAULT_TIMEOUT = 10.0  # seconds per request (connect, each read, each write)
_JSON = {"Content-Type": "application/json"}  # sinkd refuses state changes without it (CSRF)


# --- typed results: the one JSON shape (docs/judging.md) -------------------------------------


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class Reply:
    """The SMTP reply the message got: ``250 2.0.0 Ok: queued as ...``."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reply:
        return cls(int(data["code"]), str(data.get("enhanced", "")), str(data.get("text", "")))


@dataclass(frozen=True, slots=True)
class Envelope:
    client_ip: str
    helo: str | None
    mail_from: str | None  # "" is the null sender <>
    rcpt_to: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Envelope:
        return cls(
            str(data.get("client_ip", "")),
            data.get("helo"),
            data.get("mail_from"),
            tuple(data.get("rcpt_to") or ()),
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """The effective sender identity (``source``: xclient, proxy, option or connection)."""

    ip: str
    helo: str | None = None
    name: str | None = None
    source: str = "connection"
    peer: str | None = None
    auth_user: str | None = None
    tls: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Identity:
        return cls(
            str(data.get("ip", "")),
            data.get("helo"),
            data.get("name"),
            str(data.get("source", "connection")),
            data.get("peer"),
            data.get("auth_user"),
            bool(data.get("tls", False)),
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that matched: a stable ``code``, the ``action`` it applied and one sentence."""

    code: str
    filter: str
    category: str
    action: str
    score: float
    reason: str
    stage: str
    decided: bool
    detail: Mapping[str, Any] = field(default_factory=dict)
    # Why the check could not reach its own answer: "no-dns-data", "unavailable", "error".
    unjudged: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        unjudged = data.get("unjudged")
        return cls(
            str(data["code"]),
            str(data.get("filter", "")),
            str(data.get("category", "")),
            str(data.get("action", "")),
            float(data.get("score") or 0.0),
            str(data.get("reason", "")),
            str(data.get("stage", "")),
            bool(data.get("decided", False)),
            dict(data.get("detail") or {}),
            None if unjudged is None else str(unjudged),
        )


@dataclass(frozen=True, slots=True)
class RelayRecipient:
    """One recipient of a relay onward (``--relay``): ``queued``, ``delivered`` or ``failed``,
    with the target's last reply to it (None before the first attempt)."""

    address: str
    status: str
    reply: Mapping[str, Any] | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RelayRecipient:
        return cls(str(data["address"]), str(data["status"]), data.get("reply"))


@dataclass(frozen=True, slots=True)
class Relay:
    """A message's relay onward (docs/relay.md): ``status`` is ``queued`` while any recipient
    is pending, ``delivered`` when every one was, ``failed`` otherwise. ``last_reply`` is
    ``{"code", "enhanced", "text"}``, or ``{"error"}`` when the target gave no SMTP answer."""

    status: str
    attempts: int
    queued_at: datetime | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    done_at: datetime | None
    last_reply: Mapping[str, Any] | None
    recipients: tuple[RelayRecipient, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Relay:
        return cls(
            status=str(data["status"]),
            attempts=int(data.get("attempts") or 0),
            queued_at=_time(data.get("queued_at")),
            last_attempt_at=_time(data.get("last_attempt_at")),
            next_attempt_at=_time(data.get("next_attempt_at")),
            done_at=_time(data.get("done_at")),
            last_reply=data.get("last_reply"),
            recipients=tuple(RelayRecipient.from_json(r) for r in data.get("recipients") or ()),
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One stored verdict: a message (or a refused envelope) judged against one profile.

    ``verdict`` is ``accept``, ``quarantine`` or ``reject``; ``data`` keeps the JSON as sent.
    """

    id: str
    received_at: datetime | None
    transaction_id: str | None
    profile: str
    verdict: str
    disposition: str
    score: float
    stage: str
    reply: Reply
    envelope: Envelope
    identity: Identity | None
    subject: str | None
    stripped: tuple[str, ...]
    findings: tuple[Finding, ...]
    size: int | None
    released_at: datetime | None
    relay: Relay | None = None  # None unless queued for relaying onward (--relay)
    data: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        identity = data.get("identity")
        return cls(
            id=str(data["id"]),
            received_at=_time(data.get("received_at")),
            transaction_id=data.get("transaction_id"),
            profile=str(data.get("profile", "")),
            verdict=str(data["verdict"]),
            disposition=str(data.get("disposition", "")),
            score=float(data.get("score") or 0.0),
            stage=str(data.get("stage", "")),
            reply=Reply.from_json(data.get("reply") or {"code": 0}),
            envelope=Envelope.from_json(data.get("envelope") or {}),
            identity=Identity.from_json(identity) if identity else None,
            subject=data.get("subject"),
            stripped=tuple(data.get("stripped") or ()),
            findings=tuple(Finding.from_json(f) for f in data.get("findings") or ()),
            size=data.get("size"),
            released_at=_time(data.get("released_at")),
            relay=Relay.from_json(data["relay"]) if data.get("relay") else None,
            data=dict(data),
        )

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    @property
    def fully_judged(self) -> bool:
        """False when a check the profile needs could not answer (a scanner down, a filter
        error): the verdict was reached without it. Offline DNS without data does not count."""
        return bool(self.data.get("fully_judged", True))

    @property
    def deciding(self) -> list[Finding]:
        """The finding(s) that decided the verdict (none for a plain accept)."""
        return [f for f in self.findings if f.decided]

    @property
    def reasons(self) -> list[str]:
        """The deciding findings' sentences."""
        return [f.reason for f in self.deciding]


@dataclass(frozen=True, slots=True)
class MessagePage:
    total: int
    limit: int
    offset: int
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """``POST /messages/{id}/evaluate``: the stored message judged against ``profile``."""

    id: str
    profile: str
    stored: bool
    verdicts: list[Message]


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    id: str
    title: str


@dataclass(frozen=True, slots=True)
class Routing:
    """The default profile, recipient routes (domain -> profile id) and the ids a change may
    name."""

    profile: str
    routes: dict[str, str]
    profiles: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Readiness:
    """``/readyz``: ``ready`` and the check results (``smtp``, ``store``)."""

    ready: bool
    checks: dict[str, Any]

    @property
    def why_not(self) -> str:
        failing = [name for name, ok in self.checks.items() if ok is False]
        return "not ready: " + (", ".join(failing) + " down" if failing else "unknown reason")


@dataclass(frozen=True, slots=True)
class Chaos:
    triggers: str
    seed: int | None
    stages: list[str]


@dataclass(frozen=True, slots=True)
class Event:
    """One event of the stream: ``verdict`` (a stored record) or ``released``."""

    name: str
    data: dict[str, Any]

    @property
    def message(self) -> Message:
        return Message.from_json(self.data)


# --- the client -------------------------------------------------------------------------------


class SinkdClient:
    """``SinkdClient("http://127.0.0.1:8025")``: every endpoint as a method. Use it as a
    context manager or ``close()`` it. ``auth=("user", "pass")`` for ``--http-auth``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        auth: tuple[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.username is not None:  # http://user:pass@host:8025 (--http-auth)
            auth = auth or (unquote(parts.username), unquote(parts.password or ""))
            netloc = parts.netloc.rpartition("@")[2]
            url = urlunsplit(parts._replace(netloc=netloc))
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.auth = auth
        self._http = httpx.Client(base_url=self.url, timeout=timeout, auth=auth)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing ---

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        send_json = method in ("POST", "PUT", "PATCH", "DELETE")
        try:
            response = self._http.request(
                method,
                path,
                params={k: v for k, v in (params or {}).items() if v is not None},
                content=json.dumps({} if body is None else body) if send_json else None,
                headers=_JSON if send_json else None,
            )
        except httpx.TransportError as exc:
            raise HttpApiUnreachable(f"{self.url}: {_why(exc)}") from exc
        if response.status_code not in ok:
            raise _error(method, path, response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise HttpApiError(
                response.status_code,
                "bad answer",
                f"{method} {path}: not JSON: {response.text[:200]!r}",
            ) from None

    # --- health ---

    def livez(self) -> bool:
        """True when the process answers."""
        return bool(self._json("GET", "/livez").get("status") == "ok")

    def readyz(self) -> Readiness:
        """Ready (200) or not (503) with the checks; unreachable raises ``HttpApiUnreachable``."""
        response = self._request("GET", "/readyz", ok=(200, 503))
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            checks = {k: v for k, v in body.items() if k != "status"}
            return Readiness(True, checks)
        detail = body.get("detail") if isinstance(body, dict) else None
        return Readiness(False, dict(detail) if isinstance(detail, dict) else {})

    # --- messages ---

    def messages(
        self,
        *,
        verdict: str | None = None,
        profile: str | None = None,
        to: str | None = None,
        sender: str | None = None,
        subject: str | None = None,
        code: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> MessagePage:
        """One page, newest first. ``to``, ``sender`` (the envelope's MAIL FROM) and
        ``subject`` match substrings ignoring ASCII case; ``code`` is one finding code."""
        params = {
            "verdict": verdict,
            "profile": profile,
            "to": to,
            "from": sender,
            "subject": subject,
            "code": code,
            "since": _rfc3339(since),
            "until": _rfc3339(until),
            "limit": limit,
            "offset": offset,
        }
        body = self._json("GET", f"{API}/messages", params=params)
        return MessagePage(
            int(body["total"]),
            int(body["limit"]),
            int(body["offset"]),
            [Message.from_json(m) for m in body["messages"]],
        )

    def all_messages(self, **filters: Any) -> list[Message]:
        """Every matching message, newest first (page after page of 500)."""
        found: list[Message] = []
        while True:
            page = self.messages(**filters, limit=500, offset=len(found))
            found.extend(page.messages)
            if not page.messages or len(found) >= page.total:
                return found

    def message(self, message_id: str) -> Message:
        return Message.from_json(self._json("GET", f"{API}/messages/{message_id}"))

    def raw(self, message_id: str) -> bytes:
        """The bytes received (404 for a refusal before DATA)."""
        return self._request("GET", f"{API}/messages/{message_id}/raw").content

    def filtered(self, message_id: str) -> bytes:
        """The copy as delivered, after strip actions (409 for a refused message)."""
        return self._request("GET", f"{API}/messages/{message_id}/filtered").content

    def findings(self, message_id: str) -> list[Finding]:
        body = self._json("GET", f"{API}/messages/{message_id}/findings")
        return [Finding.from_json(f) for f in body["findings"]]

    def delete(self, message_id: str) -> None:
        self._request("DELETE", f"{API}/messages/{message_id}", ok=(204,))

    def clear(self) -> int:
        """Remove every stored message; how many there were."""
        return int(self._json("DELETE", f"{API}/messages")["deleted"])

    def release(self, message_id: str) -> Message:
        return Message.from_json(self._json("POST", f"{API}/messages/{message_id}/release"))

    def evaluate(self, message_id: str, profile: str, *, store: bool = False) -> Evaluation:
        body = self._json(
            "POST",
            f"{API}/messages/{message_id}/evaluate",
            body={"profile": profile, "store": store},
        )
        return Evaluation(
            str(body["id"]),
            str(body["profile"]),
            bool(body["stored"]),
            [Message.from_json(v) for v in body["verdicts"]],
        )

    # --- profiles, routing, delivery state, chaos ---

    def profiles(self) -> list[ProfileInfo]:
        body = self._json("GET", f"{API}/profiles")
        return [ProfileInfo(str(p["id"]), str(p.get("title", ""))) for p in body["profiles"]]

    def profile(self, name: str) -> dict[str, Any]:
        """The merged profile as JSON."""
        body: dict[str, Any] = self._json("GET", f"{API}/profiles/{name}")
        return body

    def routing(self) -> Routing:
        return _routing(self._json("GET", f"{API}/routing"))

    def set_routing(self, profile: str, routes: Mapping[str, str] | None = None) -> Routing:
        """Judge mail with ``profile``, and recipients of ``routes``' domains with theirs, from
        the next MAIL FROM on (422 ``HttpApiError`` for an unknown profile)."""
        body = {"profile": profile, "routes": dict(routes or {})}
        return _routing(self._json("PUT", f"{API}/routing", body=body))

    def delivery_state(self) -> int:
        """How many greylist triplets and rate-limit windows the server remembers."""
        return int(self._json("GET", f"{API}/delivery-state")["entries"])

    def reset_delivery_state(self) -> int:
        """Forget greylisting and rate-limit memory (as a restart would); how many entries."""
        return int(self._json("DELETE", f"{API}/delivery-state")["forgotten"])

    def chaos(self) -> Chaos:
        return _chaos(self._json("GET", f"{API}/chaos"))

    def set_chaos(self, triggers: str, seed: int | None = None) -> Chaos:
        body = {"triggers": triggers, "seed": seed}
        return _chaos(self._json("PUT", f"{API}/chaos", body=body))

    def openapi(self) -> dict[str, Any]:
        body: dict[str, Any] = self._json("GET", f"{API}/openapi.json")
        return body

    # --- events ---

    def events(self, *, timeout: float | None = None) -> EventStream:
        """Subscribe to live events; returns once the server confirms the subscription, so
        that nothing stored afterwards is missed. Close it (or use ``with``)."""
        return EventStream(self, self.timeout if timeout is None else timeout)


def _routing(body: Mapping[str, Any]) -> Routing:
    return Routing(str(body["profile"]), dict(body["routes"]), list(body.get("profiles", [])))


def _chaos(body: Mapping[str, Any]) -> Chaos:
    return Chaos(str(body["triggers"]), body.get("seed"), list(body.get("stages", [])))


def _rfc3339(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("since/until must be timezone-aware")
    return value.isoformat().replace("+00:00", "Z")


def _why(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused (is sinkd running with its HTTP API on?)"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    return text


def _error(method: str, path: str, response: httpx.Response) -> HttpApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return HttpApiError(response.status_code, str(body["error"]), body.get("detail"))
    return HttpApiError(
        response.status_code, response.reason_phrase.lower(), f"{method} {path}: {response.text}"
    )


_END = object()


class EventStream:
    """An open subscription to ``GET /api/v1/events``: ``get(timeout)`` the next event (None
    when none came in time), or iterate (ends when the stream ends). ``close()`` ends it."""

    def __init__(self, client: SinkdClient, timeout: float) -> None:
        # Its own connection: the stream holds one for as long as it is open.
        self._http = httpx.Client(
            base_url=client.url,
            auth=client.auth,
            timeout=httpx.Timeout(timeout, read=None),  # quiet streams are normal
        )
        self._queue: queue.Queue[Event | object] = queue.Queue()
        self._subscribed = threading.Event()
        self._closed = False
        self._response: httpx.Response | None = None
        self.error: BaseException | None = None  # why the stream ended, if not by close()
        self._thread = threading.Thread(target=self._read, name="sinkd-events", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise HttpApiUnreachable(f"{client.url}: the event stream did not start in time")
        if self.error is not None:
            error = self.error
            self.close()
            raise error

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> None:
        try:
            with self._http.stream("GET", f"{API}/events") as response:
                self._response = response
                if response.status_code != 200:
                    response.read()
                    raise _error("GET", f"{API}/events", response)
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        if line[1:].strip() == "subscribed":
                            self._subscribed.set()
                        continue
                    if line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                        continue
                    if "data" in fields:
                        event = Event(fields.get("event", "message"), json.loads(fields["data"]))
                        self._queue.put(event)
                    fields = {}
        except httpx.TransportError as exc:
            if not self._closed:
                self.error = HttpApiUnreachable(f"{self._http.base_url}: {_why(exc)}")
        except HttpApiError as exc:
            self.error = exc
        except Exception as exc:  # a bug or garbage on the wire: end the stream, keep why
            if not self._closed:
                self.error = exc
        finally:
            self._subscribed.set()  # whoever waits must look at self.error
            self._queue.put(_END)

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None if none arrives within ``timeout`` seconds or the stream has
        ended (``ended`` says which; ``error`` why)."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._queue.put(_END)  # stays ended for every later call
            return None
        assert isinstance(item, Event)
        return item

    @property
    def ended(self) -> bool:
        return not self._thread.is_alive()

    def __iter__(self) -> Iterator[Event]:
        while (event := self.get()) is not None:
            yield event

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Shutting the socket down wakes the reader blocked in recv(); closing it would not.
        response = self._response
        if response is not None:
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(self._http.timeout.connect or DEFAULT_TIMEOUT)
        self._http.close()
