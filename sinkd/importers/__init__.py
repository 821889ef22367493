"""Policy import: a gateway's own configuration turned into a sinkd profile.

Owns the registry of importers (one module per product: ``postfix``, ``spamassassin``,
``exchange_online``) and what they share (``sinkd.importers.base``): the origin of every
imported entry, the list of what could not be translated and the rendering of the profile
document with those as comments. Importers read configuration files they are given; they never
judge mail, open sockets or import the server, the web app or the store.
"""

from __future__ import annotations

from sinkd.importers.base import (
    Imported,
    Importer,
    Untranslated,
    render,
)

__all__ = ["REGISTRY", "Imported", "Importer", "Untranslated", "register", "render"]

# Filled by each importer module's ``register`` call at import (``sinkd.importers.products``
# imports them all, so that the registry is complete before the command line reads it).
REGISTRY: dict[str, Importer] = {}


def register(importer: Importer) -> Importer:
    if importer.product in REGISTRY:
        raise ValueError(f"two importers for {importer.product!r}")
    REGISTRY[importer.product] = importer
    return importer
