"""How sinkd runs its own modules as child processes (``python -m sinkd....``).

Owns the environment those children get: the server's, with the directory sinkd was imported
from first on ``PYTHONPATH``, so that a source checkout run without installing still finds
its modules. It starts nothing itself.
"""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])


def child_env() -> dict[str, str]:
    """The environment for ``sys.executable -m sinkd.<module>``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    return env
