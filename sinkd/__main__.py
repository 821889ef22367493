"""``python -m sinkd``: the same as the ``sinkd`` command."""

from sinkd.cli import main

raise SystemExit(main())
