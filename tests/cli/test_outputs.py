"""Issue 20, items 2 and 6: no command writes over its inputs or a run's files; devices, pipes and
`-` are written in place; symlinks are followed; the plot's format follows its extension."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pandas as pd
import pytest
from helpers import one_line_error

from lstmbyhand.cli import main
from lstmbyhand.forecast.plots import formats
from lstmbyhand.forecast.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")

MAGIC = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF", "jpg": b"\xff\xd8\xff"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run and its data file."""
    root = tmp_path_factory.mktemp("outputs")
    data = root / "data.csv"
    data.write_text("t,y\n" + "".join(f"{i},{(i * 7) % 11 + i / 3:.3f}\n" for i in range(40)))
    run = root / "run"
    argv = ["train", str(data), "--target", "y", "--window", "3", "--hidden", "2", "--epochs",
            "1", "--quiet", "--base", "none", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    return run, data


def forecast(run, data, *extra: str) -> list[str]:
    return ["forecast", str(run), "--data", str(data), "--steps", "2", *extra]


def test_output_over_the_data_file_is_refused(trained, capsys, tmp_path):
    run, data = trained
    before = data.read_bytes()
    one_line_error(capsys, forecast(run, data, "--output", str(data)), "reads", "--output")
    one_line_error(capsys, forecast(run, data, "--plot", str(data)), "reads", "--plot")
    link = tmp_path / "link.csv"  # a symlink to the data, and a hard link of it
    link.symlink_to(data)
    one_line_error(capsys, forecast(run, data, "--output", str(link)), "reads")
    hard = tmp_path / "hard.csv"
    os.link(data, hard)
    one_line_error(capsys, forecast(run, data, "--output", str(hard)), "reads")
    assert data.read_bytes() == before


@pytest.mark.parametrize("name", ["weights.safetensors", "config.json", "state.safetensors",
                                  "metrics.csv", ".lstmbyhand-run"])  # fmt: skip
def test_output_over_a_run_file_is_refused(trained, capsys, name):
    run, data = trained
    before = (run / name).read_bytes()
    one_line_error(capsys, forecast(run, data, "--output", str(run / name)), "--output")
    assert (run / name).read_bytes() == before
    assert main(["evaluate", str(run), "--no-baselines", "--json"]) == 0  # the run still opens


def test_plot_over_the_runs_loss_plot_is_refused(trained, capsys):
    run, data = trained
    one_line_error(capsys, forecast(run, data, "--plot", str(run / "loss.png")), "--plot")


def test_dash_writes_to_stdout(trained, capsys):
    run, data = trained
    capsys.readouterr()
    assert main(forecast(run, data, "--output", "-")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "t,y" and len(lines) == 3
    assert not Path("-").exists()


def test_a_fifo_is_written_in_place(trained, tmp_path):
    run, data = trained
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert main(forecast(run, data, "--output", str(fifo))) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the pipe, not renamed over
    assert got and got[0].decode().startswith("t,y\n")


def test_dev_null_stays_a_device(trained):
    run, data = trained
    assert main(forecast(run, data, "--output", "/dev/null", "--plot", "/dev/null")) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_symlinks_are_followed(trained, tmp_path):
    run, data = trained
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(forecast(run, data, "--output", str(link))) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link stays
    assert pd.read_csv(target).shape == (2, 2)  # the file it points to holds the forecast


@pytest.mark.parametrize("ext", ["svg", "pdf", "jpg", "png"])
def test_plot_format_follows_the_extension(trained, tmp_path, ext):
    run, data = trained
    plot = tmp_path / f"f.{ext}"
    assert main(forecast(run, data, "--output", str(tmp_path / "f.csv"), "--plot", str(plot))) == 0
    assert plot.read_bytes().startswith(MAGIC[ext])


def test_unknown_plot_format_is_refused_with_the_list(trained, capsys, tmp_path):
    run, data = trained
    line = one_line_error(capsys, forecast(run, data, "--plot", str(tmp_path / "f.xyz")),
                          "cannot write .xyz", ".png", ".svg", ".pdf")  # fmt: skip
    assert all(f".{f}" in line for f in formats())
    one_line_error(capsys, ["inspect", str(run), "--data", str(data), "--plot",
                            str(tmp_path / "g.doc")], "cannot write .doc")  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_missing_folder_and_directory_outputs_are_named(trained, capsys, tmp_path):
    run, data = trained
    one_line_error(capsys, forecast(run, data, "--output", str(tmp_path / "nodir" / "f.csv")),
                   "the folder", "nodir", "does not exist")  # fmt: skip
    one_line_error(capsys, forecast(run, data, "--plot", str(tmp_path)), "is a directory")
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_output_and_plot_on_one_file_is_refused(trained, capsys, tmp_path):
    run, data = trained
    same = str(tmp_path / "f.png")
    one_line_error(capsys, forecast(run, data, "--output", same, "--plot", same), "both")


def test_inspect_default_plot_is_the_runs_own_file(trained, capsys):
    run, data = trained
    assert main(["inspect", str(run), "--data", str(data)]) == 0
    assert (run / "gates.png").read_bytes().startswith(MAGIC["png"])
    assert "gates.png" in RunDir(run).own_files()  # recorded: `train --force` removes it
