"""Scraping ``GET /metrics`` as Prometheus does and reading the text back with
prometheus-client's own parser; sending a short load with the standard library's ``smtplib``
(in a thread, so the server in the test's event loop keeps serving)."""

from __future__ import annotations

import asyncio
import smtplib
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.smtp import TIMEOUT

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient, **kwargs: object) -> Samples:
    """Every sample of one scrape, keyed by sample name and labels."""
    response = await http.get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def by_label(samples: Samples, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """The samples called ``name`` summed by the values of ``labels`` (zeros left out)."""
    counts: Counter[tuple[str, ...]] = Counter()
    for (sample, sample_labels), value in samples.items():
        if sample == name and value:
            given = dict(sample_labels)
            counts[tuple(given[label] for label in labels)] += int(value)
    return counts


def smtplib_load(host: str, port: int, messages: list[bytes], *, per_connection: int) -> int:
    """Send ``messages`` from alice to bob, ``per_connection`` on each connection; how many
    were answered 250 (smtplib raises on a refusal of the only recipient)."""
    accepted = 0
    for start in range(0, len(messages), per_connection):
        with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
            for raw in messages[start : start + per_connection]:
                try:
                    smtp.sendmail("alice@sender.example", ["bob@corp.example"], raw)
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError):
                    continue
                accepted += 1
    return accepted


def open_session(host: str, port: int) -> smtplib.SMTP:
    """An SMTP connection that has been greeted and said EHLO, left open for the caller."""
    client = smtplib.SMTP(host, port, timeout=TIMEOUT)
    client.ehlo()
    return client


async def send_load(host: str, port: int, messages: list[bytes], *, per_connection: int) -> int:
    return await asyncio.to_thread(
        smtplib_load, host, port, messages, per_connection=per_connection
    )
