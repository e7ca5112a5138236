"""One module per forecasting subcommand, each with `add_parser(subparsers)` and `run(args)`."""
