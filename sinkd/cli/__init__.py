"""The ``sinkd`` command line: serve, check, report, profiles, messages, store and readyz.

Owns parsing arguments (each ``serve`` option also read from a ``SINKD_*`` variable), exit
codes and human or JSON output. It holds no policy: checks go through the same engine
``Transaction`` the server uses, and reads go through the store. Message *files* are judged as
an SMTP client would send them (``sinkd.core.as_sent``); a file that is no message, or an option
that is no address, stops ``check`` and ``report`` with exit 2 and a line naming it.

Exit codes of ``sinkd check``:

- without ``--fail-on``: 0 accept, 3 quarantine, 4 reject (the strictest verdict);
- with ``--fail-on LEVEL``: 0 no file at or above LEVEL, 1 at least one;
- 5 (``EXIT_INCOMPLETE``): a verdict was reached without a check its profile needs (spamd did
  not answer, a live DNS lookup timed out, a filter raised: ``Verdict.incomplete``). It wins
  over 0, 3 and 4, because a verdict code stated for a message that was not fully judged would
  be trusted as if it had been; with ``--fail-on`` a gate failure (1) wins over it: the build
  fails either way, and 1 points at a message to fix. A CI job never passes on a message that
  was not judged. Checks offline DNS left without data are reported, never exit 5 (that is
  offline mode's designed state, see ``Unjudged``);
- 2: bad options or input, before anything is judged.

The package holds one module per subcommand (``serve``, ``check``, ``report``, ``profiles``,
``messages``, ``store``, ``readyz``), loaded only when that subcommand runs
(``sinkd.cli.main``); the options of ``serve`` (and the shared profile and DNS options) are
generated from the setting declarations in ``sinkd.services.settings``.
"""

from __future__ import annotations

from sinkd.cli.base import (
    EXIT_ERROR,
    EXIT_GATE_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_QUARANTINE,
    EXIT_REJECT,
    EXIT_USAGE,
)
from sinkd.cli.main import build_parser, main

__all__ = [
    "EXIT_ERROR",
    "EXIT_GATE_FAILED",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_QUARANTINE",
    "EXIT_REJECT",
    "EXIT_USAGE",
    "build_parser",
    "main",
]
