"""``python -m insetgan_ops``: see :mod:`insetgan_ops.cli`."""

from .cli import main

raise SystemExit(main())
