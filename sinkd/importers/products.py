"""Every importer sinkd ships, registered in the order ``sinkd profiles import --help`` lists
them. Owns nothing but that list; each product's syntax is its own module's."""

from __future__ import annotations

from sinkd.importers import REGISTRY, Importer
from sinkd.importers import postfix as postfix  # registers `postfix` on import

__all__ = ["REGISTRY", "Importer"]
