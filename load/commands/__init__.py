"""`trackbone` subcommands that drive `load/` (demo, bench, simulate, eta-eval).

Each module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; they are
registered in the ``trackbone.commands`` entry-point group (pyproject.toml), so
``streams`` never imports ``load``.
"""
