"""``python -m insetgan_ops``: the library's commands (:mod:`insetgan_ops.cli`) and the demo's."""

from .cli import main
from .demo import register_commands

register_commands()
raise SystemExit(main())
