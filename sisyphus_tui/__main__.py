"""``python -m sisyphus_tui`` runs the ``sisyphus`` command."""

from sisyphus_tui.cli import main

raise SystemExit(main())
