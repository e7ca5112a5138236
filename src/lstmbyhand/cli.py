"""The `lstmbyhand` command line: one subcommand per job.

    lstmbyhand demo [--out DIR]      the seed's example, both formulations, with gate plots
    lstmbyhand bench                 speed against torch.nn.LSTM

Each subcommand lives in its own module and registers itself through `add_parser(subparsers)`;
user mistakes become one line on stderr and exit code 2 (`UserError`).
"""

from __future__ import annotations

import argparse
import sys


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    from lstmbyhand import demo

    parser = argparse.ArgumentParser(prog="lstmbyhand", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"lstmbyhand {args.command}: error: {err}", file=sys.stderr)
        return 2
