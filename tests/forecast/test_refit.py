"""Refit on the whole series (`train --refit`): sees every value, leaves the evaluated weights alone,
resumes bit for bit, is what `forecast` uses (and says so), and is refused when edited."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmbyhand.cli import main
from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.prepare import load_series
from lstmbyhand.forecast.refit import whole
from lstmbyhand.forecast.rundir import REFIT, REFIT_STATE, WEIGHTS, RunDir
from lstmbyhand.forecast.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def series_csv(path: Path, n: int = 48, last: float | None = None) -> str:
    t = np.arange(n)
    y = 10 + np.sin(t / 3) * 3 + 0.05 * t + np.random.default_rng(0).normal(0, 0.2, n)
    if last is not None:
        y[-1] = last
    path.write_text("t,y\n" + "".join(f"{i},{v:.4f}\n" for i, v in zip(t, y, strict=True)))
    return str(path)


def tiny(data: str, **kw) -> TrainSettings:
    base = dict(window=6, hidden=4, epochs=3, batch_size=8, patience=0, lr=0.1, base="none")
    base.update(kw)
    return TrainSettings(data, "y", **base)


def tensors(run: Path, name: str) -> dict[str, torch.Tensor]:
    return RunDir(run).read_refit()[0] if name == REFIT else RunDir(run).read_weights()[0]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory) -> tuple[Path, str]:
    """A run trained, then refit with `train --resume --refit` (its evaluated weights' bytes kept)."""
    tmp = tmp_path_factory.mktemp("refit")
    data = series_csv(tmp / "s.csv")
    run = tmp / "run"
    train(tiny(data), run, quiet=True)
    before = (run / WEIGHTS).read_bytes()
    result = train(tiny(data), run, resume=True, refit=True, quiet=True)
    assert (run / WEIGHTS).read_bytes() == before  # the evaluated weights, byte for byte
    assert result.refit == {**result.refit, "epochs": 3, "length": 48, "kept": "network"}
    return run, data


def test_refit_sees_the_last_value(tmp_path, refit_run):
    """Only the series' last value changed: the evaluated weights (it is in their test part) stay
    the same, the refit weights (trained on all of it) change."""
    run, _ = refit_run
    other = tmp_path / "run"
    train(tiny(series_csv(tmp_path / "s.csv", last=30.0)), other, refit=True, quiet=True)
    assert same(tensors(run, WEIGHTS), tensors(other, WEIGHTS))
    assert not same(tensors(run, REFIT), tensors(other, REFIT))
    s = tiny(str(tmp_path / "s.csv"))
    series = load_series(s)
    last_target = whole(s, series, 0).raw("train")[1][-1, -1]  # the last training window's target
    assert last_target == series.values[-1] == 30.0


def test_interrupted_refit_resumes_bit_for_bit(tmp_path, refit_run, monkeypatch):
    run, data = refit_run
    cut = tmp_path / "run"
    writes = []
    real = RunDir.write_refit_state

    def die_after_epoch_1(self, t, meta):  # killed right after the state of refit epoch 1
        real(self, t, meta)
        writes.append(meta["epoch"])
        if meta["epoch"] == 1:
            raise SystemExit("killed")

    monkeypatch.setattr(RunDir, "write_refit_state", die_after_epoch_1)
    with pytest.raises(SystemExit):
        train(tiny(data), cut, refit=True, quiet=True)
    monkeypatch.setattr(RunDir, "write_refit_state", real)
    assert writes == [0, 1] and not (cut / REFIT).exists()
    result = train(tiny(data), cut, resume=True, quiet=True)  # no --refit: it finishes the refit
    assert result.refit is not None
    assert same(tensors(run, REFIT), tensors(cut, REFIT))
    full, part = (RunDir(r).read_refit_state() for r in (run, cut))
    assert same(full[0], part[0])
    assert full[1]["history"] == part[1]["history"]  # losses (no times) of every refit epoch


def test_forecast_uses_the_refit_weights_and_says_so(tmp_path, refit_run, capsys):
    run, data = refit_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["forecast", str(copy), "--data", data, "--steps", "3"]) == 0
    refit_out = capsys.readouterr()
    assert "weights: refit.safetensors (refit on all 48 values for 3 epochs)" in refit_out.err
    (copy / REFIT).unlink()
    assert main(["forecast", str(copy), "--data", data, "--steps", "3"]) == 0
    plain = capsys.readouterr()
    assert "weights: weights.safetensors (trained on the first" in plain.err
    assert refit_out.out != plain.out and len(plain.out.splitlines()) == 4


@pytest.mark.parametrize("name", [REFIT, REFIT_STATE])
def test_refit_files_edited_by_one_byte_are_refused(tmp_path, refit_run, capsys, name):
    run, data = refit_run
    size = (run / name).stat().st_size
    for where in (20, size // 2, size - 1):  # header, somewhere, the last tensor byte
        copy = tmp_path / f"run{where}"
        shutil.copytree(run, copy)
        raw = bytearray((copy / name).read_bytes())
        raw[where] ^= 1
        (copy / name).write_bytes(bytes(raw))
        if name == REFIT:
            code = main(["forecast", str(copy), "--data", data, "--steps", "2"])
        else:
            (copy / REFIT).unlink()  # the state is read when the refit is not finished
            code = main(["train", data, "--target", "y", "--out", str(copy), "--resume", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and name in err and len(err.strip().splitlines()) == 1, err


def test_test_fraction_zero_trains_and_evaluate_says_nothing_is_held_out(tmp_path, capsys):
    data = series_csv(tmp_path / "s.csv")
    run = tmp_path / "run"
    train(tiny(data, test_fraction=0.0, epochs=2), run, quiet=True)
    assert RunDir(run).read_config()["split"] == {"n_train": 41, "n_val": 7, "n_test": 0}
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing held out to score" in err and len(err.splitlines()) == 1
    with pytest.raises(UserError, match="--test-fraction must be at least 0"):
        tiny(data, test_fraction=-0.1).check()


def test_resume_with_more_epochs_refits_again(tmp_path, refit_run):
    """A refit always matches its run: more epochs (a new best epoch) give a new refit, the one a
    run trained with those epochs from the start has."""
    run, data = refit_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = train(tiny(data, epochs=5), copy, resume=True, quiet=True, given={"epochs"})
    fresh = train(tiny(data, epochs=5), tmp_path / "fresh", refit=True, quiet=True)
    assert result.refit["epochs"] == fresh.refit["epochs"] == result.progress.best_epoch
    assert same(tensors(copy, REFIT), tensors(tmp_path / "fresh", REFIT))


def test_val_fraction_zero_needs_patience_zero_and_trains_every_epoch(tmp_path, capsys):
    data = series_csv(tmp_path / "s.csv")
    with pytest.raises(UserError, match="--val-fraction 0 leaves nothing to stop early on"):
        tiny(data, val_fraction=0.0, patience=5).check()
    run = tmp_path / "run"
    result = train(tiny(data, val_fraction=0.0, epochs=2), run, refit=True, quiet=True)
    assert RunDir(run).read_config()["split"] == {"n_train": 41, "n_val": 0, "n_test": 7}
    assert result.progress.best_epoch == 2 and result.refit["epochs"] == 2  # the last epoch
    assert (run / "metrics.csv").read_text().splitlines()[1:] and all(
        line.split(",")[2] == "" for line in (run / "metrics.csv").read_text().splitlines()[1:]
    )  # no validation loss recorded
    assert main(["evaluate", str(run), "--no-baselines"]) == 0
    assert "test split" in capsys.readouterr().out
