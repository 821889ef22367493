"""Every importer sinkd ships, registered on import (``sinkd profiles import --help`` lists them
in this order). Owns nothing but that list; each product's syntax is its own module's."""

from __future__ import annotations

from sinkd.importers import REGISTRY, Importer
from sinkd.importers import exchange_online as exchange_online  # registers `exchange-online`
from sinkd.importers import postfix as postfix  # registers `postfix`
from sinkd.importers import spamassassin as spamassassin  # registers `spamassassin`

__all__ = ["REGISTRY", "Importer"]
