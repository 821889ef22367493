"""What a delivered copy looks like when nothing was stripped: the message as sent with sinkd's
Authentication-Results field (RFC 8601) on top, every other byte identical."""

from __future__ import annotations

import re

from sinkd.core.authres import AUTHSERV_ID

# sinkd's own field at the very top, with its folded continuation lines.
_OUR_FIELD = re.compile(
    rb"\AAuthentication-Results: " + re.escape(AUTHSERV_ID.encode()) + rb"[;\r\n][^\n]*\n"
    rb"(?:[ \t][^\n]*\n)*"
)


def authentication_results_added(filtered: bytes | None, original: bytes) -> str:
    """Assert that ``filtered`` is ``original`` with exactly one field, sinkd's
    Authentication-Results, put on top; return that field's value, unfolded, with each run of
    white space as one space."""
    assert filtered is not None, "there is no delivered copy"
    match = _OUR_FIELD.match(filtered)
    assert match is not None, filtered[:300]
    assert filtered[match.end() :] == original
    value = match.group(0).decode("utf-8", "surrogateescape").partition(":")[2]
    return " ".join(value.split())


# What typical-corporate (SPF on MAIL FROM, DKIM, DMARC) reports for mail from
# alice@sender.example when DNS knows no name (offline, no fixtures).
OFFLINE_TYPICAL_CORPORATE = (
    "sinkd.local; spf=none (not judged: no DNS data) smtp.mailfrom=alice@sender.example; "
    "dkim=none; dmarc=none (not judged: no DNS data) "
    'reason="no DNS data for _dmarc.sender.example" header.from=sender.example'
)
