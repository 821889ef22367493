"""Adapters behind the core's lookup ports: DNS (fixtures, live, overlay) and spamd.

Owns talking to those services; it holds no policy and must not import the server, store or
web layers.
"""
