"""The `lstmbyhand` command line: one subcommand per job.

    lstmbyhand demo [--out DIR]                     the seed's example, both formulations, with gate plots
    lstmbyhand bench                                speed against torch.nn.LSTM
    lstmbyhand train DATA.csv --target COL [...]    train a forecaster into a run directory
    lstmbyhand evaluate RUN [--data CSV] [--json]   test-split metrics against naive and statistical baselines
    lstmbyhand backtest DATA.csv --target COL --folds K   rolling origins, each fold trained afresh
    lstmbyhand forecast RUN --data CSV --steps N    forecast past the end of the data
    lstmbyhand inspect RUN --data CSV               gate heatmaps over the last window
    lstmbyhand odyssey [--seeds N] [--out DIR]      LSTM variants of Greff et al. 2017 compared (V + 7)

Each subcommand lives in its own module and registers itself through `add_parser(subparsers)`;
user mistakes become one line on stderr and exit code 2 (`UserError`), argparse's included. Flags
must be spelled out (no abbreviations: `--fo` is not `--force`). SIGINT and SIGTERM, at any moment
after start-up, end with one line and exit code 128 + the signal (see forecast/signals.py).
Plots need no GUI: `lstmbyhand.forecast.plots` draws without pyplot, and `demo` sets the Agg backend.
"""

from __future__ import annotations

import argparse
import sys

from lstmbyhand.errors import TrainingStopped, UserError

__all__ = ["UserError", "build_parser", "main"]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `UserError` line (with the hint to --help), and no
    abbreviated flags (subcommands' parsers are of this class too)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UserError(f"{message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from lstmbyhand.cli import backtest, bench, demo, evaluate, forecast, inspect, odyssey, train

    parser = Parser(prog="lstmbyhand", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (demo, bench, train, evaluate, backtest, forecast, inspect, odyssey):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lstmbyhand.forecast.signals import STOP

    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        with STOP:  # from here on a signal ends with one line, never a traceback or a bare -15
            return _main(argv)
    except KeyboardInterrupt:  # a signal in the last instant, after the command's own handling
        return _interrupted("lstmbyhand", STOP)
    finally:  # commands may set torch's thread count: give a calling program its own back
        if threads is not None:
            sys.modules["torch"].set_num_threads(threads)


def _main(argv: list[str] | None) -> int:
    from lstmbyhand.forecast.signals import STOP

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
        return _interrupted(command, STOP)
    except BrokenPipeError:  # `lstmbyhand forecast ... | head`
        return 0
    except OSError as err:  # what the commands did not name themselves: still one line
        where = f" {err.filename}" if err.filename else ""
        print(f"{command}: error: cannot use{where} ({err.strerror or err})", file=sys.stderr)
        return 2


def _interrupted(command: str, stop) -> int:
    print(f"{command}: stopped by {stop.name()} (interrupted)", file=sys.stderr)
    return stop.exit_code()


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
