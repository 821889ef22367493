"""Integrations for test suites: the pytest plugin and the typed HTTP client.

Owns what a CI job imports to talk to a running sinkd; it reaches the server only through its
HTTP API and SMTP (the plugin may start one in a thread).
"""
