"""Whether this machine has an IPv6 loopback, for the tests of sinkd's default listen addresses
(127.0.0.1 and ::1): they skip on a machine without ::1 and fail in CI, like a missing real
component (``tests/conftest.py``)."""

from __future__ import annotations

import os
import socket

import pytest


def has_ipv6_loopback() -> bool:
    """Whether a socket can bind ::1 here (not whether a resolver names it)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def require_ipv6_loopback() -> None:
    """Skip the test on a machine with no IPv6 loopback; fail it in CI (``CI=true``)."""
    if has_ipv6_loopback():
        return
    reason = "this machine has no IPv6 loopback (binding ::1 fails); sinkd listens on 127.0.0.1"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must not skip: {reason}")
    pytest.skip(reason)
