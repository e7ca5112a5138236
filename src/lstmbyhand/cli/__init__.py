"""The `lstmbyhand` command line: one subcommand per job.

    lstmbyhand demo [--out DIR]                     the seed's example, both formulations, with gate plots
    lstmbyhand bench                                speed against torch.nn.LSTM
    lstmbyhand train DATA.csv --target COL [...]    train a forecaster into a run directory
    lstmbyhand evaluate RUN [--data CSV] [--json]   test-split metrics against naive baselines
    lstmbyhand forecast RUN --data CSV --steps N    forecast past the end of the data
    lstmbyhand inspect RUN --data CSV               gate heatmaps over the last window

Each subcommand lives in its own module and registers itself through `add_parser(subparsers)`;
user mistakes become one line on stderr and exit code 2 (`UserError`), argparse's included.
"""

from __future__ import annotations

import argparse
import sys

from lstmbyhand.errors import TrainingStopped, UserError

__all__ = ["UserError", "build_parser", "main"]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `UserError` line (with the hint to --help)."""

    def error(self, message: str):
        raise UserError(f"{message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from lstmbyhand.cli import bench, demo, evaluate, forecast, inspect, train

    parser = Parser(prog="lstmbyhand", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (demo, bench, train, evaluate, forecast, inspect):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        return _main(argv)
    finally:  # commands may set torch's thread count: give a calling program its own back
        if threads is not None:
            sys.modules["torch"].set_num_threads(threads)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    command = "lstmbyhand"
    try:
        args = parser.parse_args(argv)
        command = f"lstmbyhand {args.command}"
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"{command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except TrainingStopped as err:
        print(f"{command}: {_one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lstmbyhand forecast ... | head`
        return 0


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
