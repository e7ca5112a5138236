"""Issue 20 item 5: SIGINT and SIGTERM at any moment of a command end with one line and exit code
128 + signal; the resume hint appears only when the resume it names works.

The signals are raised in-process (signal.raise_signal) from inside the code at chosen moments:
start-up, the untrained model's validation, inside a checkpoint write, twice in a row, the final
plot, the forecast's output. So every moment is hit exactly, on a busy machine too.
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import pytest

from lstmbyhand.cli import main
from lstmbyhand.forecast import files, plots, rundir
from lstmbyhand.forecast import train as train_module

pytestmark = pytest.mark.usefixtures("one_thread")

TERM, INT = signal.SIGTERM, signal.SIGINT


def args(tmp_path: Path, epochs: int = 3) -> list[str]:
    data = tmp_path / "d.csv"
    if not data.exists():
        data.write_text("t,y\n" + "".join(f"{i},{(i * 7) % 11 + i / 3:.3f}\n" for i in range(40)))
    return ["train", str(data), "--target", "y", "--window", "3", "--hidden", "2", "--epochs",
            str(epochs), "--quiet", "--base", "none", "--patience", "0", "--out",
            str(tmp_path / "run")]  # fmt: skip


def signal_at(monkeypatch, module, name: str, sigs: tuple[int, ...], call: int = 1) -> None:
    """Raise `sigs` (one after the other) at the `call`-th call of module.name, then call it."""
    real, count = getattr(module, name), {"n": 0}

    def wrapped(*a, **k):
        count["n"] += 1
        if count["n"] == call:
            for sig in sigs:
                signal.raise_signal(sig)
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapped)


def stopped_line(capsys, argv: list[str], code: int) -> str:
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert signal.Signals(code - 128).name in lines[0]
    return lines[0]


def resume_works_if_hinted(line: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.undo()
    if "--resume" in line:
        hinted = shlex.split(line.split("continue with: ")[1])
        assert main(hinted[1:]) == 0
        rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
    else:  # and indeed there is nothing to resume
        assert main([*args(tmp_path), "--resume"]) == 2
        assert "resume" in capsys.readouterr().err or not (tmp_path / "run").exists()
    if (tmp_path / "run").exists():
        assert not list((tmp_path / "run").glob(".*.tmp-*"))


def test_sigterm_during_start_up(tmp_path, monkeypatch, capsys):
    signal_at(monkeypatch, train_module, "load_panel", (TERM,))
    line = stopped_line(capsys, args(tmp_path), 143)
    assert "--resume" not in line
    resume_works_if_hinted(line, tmp_path, monkeypatch, capsys)


def test_sigint_before_the_first_epoch_gives_no_resume_hint(tmp_path, monkeypatch, capsys):
    signal_at(monkeypatch, train_module.Trainer, "validate", (INT,))
    line = stopped_line(capsys, args(tmp_path), 130)
    assert "--resume" not in line and "No epoch had finished" in line
    resume_works_if_hinted(line, tmp_path, monkeypatch, capsys)


def test_sigterm_inside_a_checkpoint_write_waits_for_it(tmp_path, monkeypatch, capsys):
    signal_at(monkeypatch, rundir, "atomic_write_all", (TERM,))  # epoch 1's checkpoint
    line = stopped_line(capsys, args(tmp_path), 143)
    assert "--resume" in line
    resume_works_if_hinted(line, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("sigs, code", [((TERM, TERM), 143), ((INT, INT), 130), ((INT, TERM), 130)])
def test_a_second_signal_does_not_cut_the_clean_exit_short(
    tmp_path, monkeypatch, capsys, sigs, code
):
    signal_at(monkeypatch, train_module.Trainer, "train_epoch", sigs, call=2)
    line = stopped_line(capsys, args(tmp_path), code)
    assert "during epoch 2" in line and "--resume" in line  # the hint survives the second signal
    resume_works_if_hinted(line, tmp_path, monkeypatch, capsys)


def test_signal_during_the_final_plot(tmp_path, monkeypatch, capsys):
    signal_at(monkeypatch, plots, "loss_curve", (TERM, TERM))
    line = stopped_line(capsys, args(tmp_path), 143)
    assert "--resume" in line
    resume_works_if_hinted(line, tmp_path, monkeypatch, capsys)


def test_signal_while_forecast_writes_its_output(tmp_path, monkeypatch, capsys):
    assert main(args(tmp_path, epochs=1)) == 0
    data = str(tmp_path / "d.csv")
    signal_at(monkeypatch, files.os, "fsync", (TERM,))
    stopped_line(capsys, ["forecast", str(tmp_path / "run"), "--data", data, "--steps", "2",
                          "--output", str(tmp_path / "f.csv")], 143)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "run"]  # no file, no temporary
