"""Application services every entry point goes through: judging a message (``Judge``),
committing verdicts (``Recorder``) and the settings sinkd runs with.

Owns assembling the core with its lookups once per server or command, and the one path from a
verdict to a stored, logged and published record. It speaks no protocol (SMTP, HTTP, argv):
adapters above it translate.
"""
