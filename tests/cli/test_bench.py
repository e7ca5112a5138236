"""`lstmbyhand bench` runs end to end on a tiny row and prints its tables (no timing is asserted)."""

from __future__ import annotations

import argparse

import pytest

from lstmbyhand.cli import bench


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_bench_prints_ratio_and_fit_tables(capsys):
    args = parse(
        ["--rows", "3,2,1,2,2", "--repeats", "1", "--sample-ms", "1", "--fit-epochs", "20"]
        + ["--cell-steps", "2"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| 3 | 2 | 1 | 2 | 2 |" in out  # the row, with both ratios
    assert out.count("**") >= 10  # train and infer ratios of the row and of the cell, fit speed-up
    assert "LSTMCell called step by step" in out
    assert "Adam steps per second" in out


def test_bench_rows_are_validated():
    with pytest.raises(SystemExit):
        parse(["--rows", "3,2,1"])
    assert parse([]).rows == bench.ROWS
