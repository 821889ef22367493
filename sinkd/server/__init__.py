"""The running server: the SMTP adapter (``protocol``, ``xclient``, the per-connection
``session``, the ``handler`` and its ``options``), STARTTLS, worker processes, logging set-up
and the runtime that wires SMTP, store and HTTP together for ``sinkd serve``.

Owns sockets and processes; it judges nothing itself (the core does) and stores through
``sinkd.store``.
"""
