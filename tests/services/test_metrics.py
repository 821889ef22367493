"""``Metrics`` as the ``Recorder`` feeds it: every stored record counted by profile, verdict,
disposition and finding code, each commit timed once; a failed commit counts
nothing; another process's records (their JSON) count exactly as this process's do."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from sinkd.services.metrics import Metrics
from sinkd.services.recorder import Recorder
from tests.support.recorder import Sink, verdicts
from tests.support.smtp import GTUBE_MESSAGE, message


def samples(metrics: Metrics, name: str) -> Counter[tuple[tuple[str, str], ...]]:
    counts: Counter[tuple[tuple[str, str], ...]] = Counter()
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.value:
                counts[tuple(sorted(sample.labels.items()))] += int(sample.value)
    return counts


async def test_a_commit_counts_each_stored_verdict_and_is_timed_once() -> None:
    metrics = Metrics()
    recorder = Recorder(Sink(), metrics=metrics)
    committed = await recorder.commit(
        await verdicts(message(), "bob@corp.example", "carol@corp.example"), message()
    )
    assert samples(metrics, "sinkd_messages_total") == Counter(
        (("disposition", "inbox"), ("profile", "typical-corporate"), ("verdict", "accept"))
        for _ in committed.records
    )
    assert samples(metrics, "sinkd_store_commit_seconds_count") == Counter({(): 1})


async def test_a_gtube_message_counts_its_finding_and_a_5xx_reply_at_data() -> None:
    metrics = Metrics()
    await Recorder(Sink(), metrics=metrics).commit(
        await verdicts(GTUBE_MESSAGE, "bob@corp.example"), GTUBE_MESSAGE
    )
    assert samples(metrics, "sinkd_findings_total")[(("code", "CONTENT_GTUBE"),)] == 1
    # Replies are counted on the wire (the SMTP protocol), not from stored verdicts.
    assert samples(metrics, "sinkd_smtp_replies_total") == Counter()


async def test_a_failed_commit_counts_nothing() -> None:
    metrics = Metrics()
    committed = await Recorder(Sink(fail=True), metrics=metrics).commit(
        await verdicts(message(), "bob@corp.example"), message()
    )
    assert not committed.stored
    assert samples(metrics, "sinkd_messages_total") == Counter()
    assert samples(metrics, "sinkd_store_commit_seconds_count") == Counter()


async def test_records_from_another_process_count_as_this_processs_do() -> None:
    here, primary = Metrics(), Metrics()
    committed = await Recorder(Sink(), metrics=here).commit(
        await verdicts(GTUBE_MESSAGE, "bob@corp.example"), GTUBE_MESSAGE
    )
    primary.count_json(record.to_json() for record in committed.records)
    for name in ("sinkd_messages_total", "sinkd_findings_total"):
        assert samples(primary, name) == samples(here, name)


def test_two_servers_in_one_process_count_apart() -> None:
    one, two = Metrics(), Metrics()
    one.sessions.inc()
    assert samples(one, "sinkd_smtp_sessions_open") == Counter({(): 1})
    assert samples(two, "sinkd_smtp_sessions_open") == Counter()
