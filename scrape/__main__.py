"""``python -m scrape``: see :mod:`scrape.cli`."""

from .cli import main

raise SystemExit(main())
