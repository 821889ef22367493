"""The running server: the aiosmtpd adapter, STARTTLS, worker processes, logging set-up and
the runtime that wires SMTP, store and HTTP together for ``sinkd serve``.

Owns sockets and processes; it judges nothing itself (the core does) and stores through
``sinkd.store``.
"""
