"""One module per ``trackbone`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""
