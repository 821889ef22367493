"""sinkd's Prometheus metrics (``GET /metrics``, docs/http-api.md).

Owns the metric families, their names and labels, and one registry per server (never
prometheus-client's global one, so two servers in one process, as in the tests, count apart):
what was judged (messages by profile, verdict and disposition; findings by code), the SMTP
replies sent (by class and the command answered), store commit latency, filter-core time, open
SMTP sessions and build info. It counts what callers tell it and renders the text format; it
judges nothing, stores nothing and serves no HTTP (``sinkd.web.app`` serves the text).

``--workers N``: the primary's ``/metrics`` counts every process's records, because each
worker's records reach the primary after the store's writer committed them (the same path as
the live event stream, ``count_json``). The per-process measurements (SMTP replies, commit
latency, filter-core time, open sessions) live in each process; a worker sends its
``snapshot()`` when the primary asks at scrape time, and the primary's families add them
(``others``) to its own.

Relaying onward (``--relay``): ``sinkd_relay_queue_depth`` is read from the store at scrape
time (``Sinkd.gather_metrics``: queued rows, so it is right across restarts and workers) and
``sinkd_relay_attempts_total`` counts each recipient of each attempt by outcome (delivered,
deferred, failed), in the process that relays (the primary).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from sinkd import __version__
from sinkd.store import MessageRecord

# The classic text format every Prometheus scrapes; sinkd's names and labels need none of
# format 1.0.0's UTF-8 escaping (prometheus-client 0.26 labels its output 1.0.0 by default).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Commit latency: group commit is ~1 ms when idle, tens of ms under load (bench/RESULTS.md).
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Filter-core time per message: tens of microseconds for plain text to seconds for big HTML.
FILTER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)

# One sample of a process's own families, as a worker sends it: (family, name, labels, value).
Sample = tuple[str, str, tuple[tuple[str, str], ...], float]


class Metrics:
    """The metric families of one server, in their own ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "sinkd_messages",
            "Verdicts stored, one per message and profile",
            ("profile", "verdict", "disposition"),
            registry=r,
        )
        self.findings = Counter(
            "sinkd_findings", "Findings in stored verdicts, by finding code", ("code",), registry=r
        )
        # Measured in each process: in a registry of their own, which ``_Combined`` reads and
        # adds the workers' snapshots to, so one scrape shows every process's sum.
        self.local = own = CollectorRegistry(auto_describe=True)
        self.commit_seconds = Histogram(
            "sinkd_store_commit_seconds",
            "Time to commit a batch of verdicts to the store",
            buckets=COMMIT_BUCKETS,
            registry=own,
        )
        self.filter_seconds = Histogram(
            "sinkd_filter_seconds",
            "Filter-core time judging one message at DATA",
            buckets=FILTER_BUCKETS,
            registry=own,
        )
        self.sessions = Gauge("sinkd_smtp_sessions_open", "SMTP sessions open", registry=own)
        self.replies = Counter(
            "sinkd_smtp_replies",
            "SMTP replies sent, by class (2xx, 3xx, 4xx, 5xx) and the command they answered"
            " (connect: the greeting; other: no recognised command)",
            ("class", "stage"),
            registry=own,
        )
        # Labelled children looked up once per label set: ``labels()`` costs ~1.5 us, several
        # times ``inc()``, and a message takes about ten (bench/metrics.py).
        self._reply_children: dict[tuple[str, str], Any] = {}
        self._message_children: dict[tuple[str, str, str], Any] = {}
        self._finding_children: dict[str, Any] = {}
        self.others: dict[int, list[Sample]] = {}  # worker index -> its last snapshot
        r.register(_Combined(self))
        self.relay_depth = Gauge(
            "sinkd_relay_queue_depth",
            "Messages queued for relaying onward (--relay), not yet delivered or failed",
            registry=r,
        )
        self.relay_attempts = Counter(
            "sinkd_relay_attempts",
            "Relay delivery outcomes, one per recipient per attempt (delivered, deferred, failed)",
            ("outcome",),
            registry=r,
        )
        for outcome in ("delivered", "deferred", "failed"):
            self.relay_attempts.labels(outcome)  # every outcome shows, 0 until it happens
        self.build = Info("sinkd_build", "The running sinkd", registry=r)
        self.build.info({"version": __version__})

    def reply(self, digit: str, stage: str) -> None:
        """Count one SMTP reply whose code starts with ``digit``, sent to ``stage``'s command."""
        child = self._reply_children.get((digit, stage))
        if child is None:
            child = self.replies.labels(f"{digit}xx", stage)
            self._reply_children[(digit, stage)] = child
        child.inc()

    def count(self, records: Sequence[MessageRecord]) -> None:
        """Count stored records (this process's commits)."""
        for record in records:
            v = record.verdict
            self._count(
                v.profile,
                v.verdict.value,
                v.disposition.value,
                (f.code for f in v.findings),
            )

    def count_json(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Count stored records in their JSON shape (another process's commits)."""
        for data in records:
            self._count(
                str(data["profile"]),
                str(data["verdict"]),
                str(data["disposition"]),
                (str(f["code"]) for f in data["findings"]),
            )

    def _count(
        self,
        profile: str,
        verdict: str,
        disposition: str,
        codes: Iterable[str],
    ) -> None:
        key = (profile, verdict, disposition)
        child = self._message_children.get(key)
        if child is None:
            child = self._message_children[key] = self.messages.labels(*key)
        child.inc()
        findings = self._finding_children
        for code in codes:
            finding = findings.get(code)
            if finding is None:
                finding = findings[code] = self.findings.labels(code)
            finding.inc()

    def snapshot(self) -> list[Sample]:
        """This process's own measurements as plain samples (what a worker sends up)."""
        return [
            (family.name, sample.name, tuple(sorted(sample.labels.items())), sample.value)
            for family in self.local.collect()
            for sample in family.samples
            if not sample.name.endswith("_created")  # a sum of timestamps means nothing
        ]

    def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every family."""
        return generate_latest(self.registry)


class _Combined(Collector):
    """The per-process families, each sample the sum of this process's and the workers'
    last snapshots (``Metrics.others``)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        # Keyed by family, so that a labelled sample only the workers have (the primary
        # serves no SMTP with --workers: its reply counter has no children) is shown too.
        extra: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for samples in self.metrics.others.values():
            for family_name, name, labels, value in samples:
                mine = extra.setdefault(family_name, {})
                mine[(name, labels)] = mine.get((name, labels), 0.0) + value
        for family in self.metrics.local.collect():
            combined = Metric(family.name, family.documentation, family.type)
            values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    values[key] = sample.value
            for key, value in extra.get(family.name, {}).items():
                values[key] = values.get(key, 0.0) + value
            for (name, labels), value in values.items():
                combined.add_sample(name, dict(labels), value)
            yield combined
