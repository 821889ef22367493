"""Presentations of verdicts for people and CI: the deliverability report and the
``check --fail-on`` gate.

Owns formatting only (text, JSON, HTML, JUnit XML); verdicts come from the core and it never
judges, stores or opens a socket.
"""
