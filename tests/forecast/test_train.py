"""The training loop: run directory contents, determinism, early stopping, resume, NaN, signals."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import subprocess_env

from lstmbyhand.errors import TrainingStopped, UserError
from lstmbyhand.forecast import train as train_module
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.rundir import RunDir
from lstmbyhand.forecast.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def series_csv(tmp_path: Path, n: int = 60) -> str:
    t = np.arange(n)
    y = 10 + np.sin(t / 3) * 3 + 0.05 * t + np.random.default_rng(0).normal(0, 0.2, n)
    p = tmp_path / "s.csv"
    p.write_text("t,y\n" + "".join(f"{i},{v:.4f}\n" for i, v in zip(t, y, strict=True)))
    return str(p)


def tiny(data: str, **kw) -> TrainSettings:
    base = dict(window=6, hidden=4, epochs=4, batch_size=16, patience=0, lr=0.01)
    base.update(kw)
    return TrainSettings(data, "y", **base)


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return RunDir(run).read_weights()[0]


def test_run_directory_holds_everything(tmp_path):
    data = series_csv(tmp_path)
    r = train(tiny(data), tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {
        "config.json", "weights.safetensors", "state.safetensors", "metrics.csv", "loss.png",
        "statistical.safetensors", "series.safetensors", ".lstmbyhand-run", ".lock",
    }  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 1
    assert config["versions"]["torch"] == torch.__version__
    assert config["data"]["path"] == str(Path(data).resolve())
    assert config["data"]["target"] == "y" and config["data"]["time"] == "t"
    assert config["settings"]["window"] == 6 and config["model"]["hidden"] == 4
    assert config["scaler"]["kind"] == "window"  # the default
    train_part = pd.read_csv(data)["y"].to_numpy()[: config["split"]["n_train"]]
    assert config["scaler"]["scale"] == pytest.approx(np.std(np.diff(train_part)))  # train only
    assert config["split"]["n_train"] + config["split"]["n_val"] + config["split"]["n_test"] == 60
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] == list(range(1, r.progress.epoch + 1))
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "lr", "seconds"}
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
    # the weights file holds the best epoch's weights
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert RunDir(run).read_weights()[1]["epoch"] == int(best["epoch"]) == r.progress.best_epoch


def test_same_seed_same_numbers(tmp_path):
    data = series_csv(tmp_path)
    train(tiny(data, seed=3), tmp_path / "a", quiet=True)
    train(tiny(data, seed=3), tmp_path / "b", quiet=True)
    train(tiny(data, seed=4), tmp_path / "c", quiet=True)
    a, b, c = (weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    la = [r["val_loss"] for r in read_metrics(tmp_path / "a")]
    assert la == [r["val_loss"] for r in read_metrics(tmp_path / "b")]


def test_early_stopping_stops_after_patience(tmp_path):
    data = series_csv(tmp_path)
    r = train(tiny(data, epochs=200, patience=2, lr=0.05), tmp_path / "run", quiet=True)
    rows = read_metrics(tmp_path / "run")
    vals = [float(x["val_loss"]) for x in rows]
    assert r.stopped_early and len(rows) < 200
    assert r.progress.best_epoch == int(np.argmin(vals)) + 1
    assert len(rows) - r.progress.best_epoch == 2  # exactly `patience` epochs without improvement


def test_resume_continues_exactly(tmp_path):
    data = series_csv(tmp_path)
    s = tiny(data, epochs=6, dropout=0.3, layers=2)  # dropout: the RNG state matters
    train(s, tmp_path / "straight", quiet=True)
    train(tiny(data, epochs=3, dropout=0.3, layers=2), tmp_path / "resumed", quiet=True)
    r = train(tiny(data, epochs=6), tmp_path / "resumed", resume=True, quiet=True, given={"epochs"})
    assert r.progress.epoch == 6
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [int(x["epoch"]) for x in rb] == [1, 2, 3, 4, 5, 6]
    assert [x["val_loss"] for x in ra] == [x["val_loss"] for x in rb]
    state_a = RunDir(tmp_path / "straight").read_state()[0]
    state_b = RunDir(tmp_path / "resumed").read_state()[0]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)  # optimizer, RNG, weights


def test_resume_refuses_different_settings_and_data(tmp_path):
    data = series_csv(tmp_path)
    train(tiny(data, epochs=2), tmp_path / "run", quiet=True)
    with pytest.raises(UserError, match=r"--window 8 \(the run has 6\)"):
        train(tiny(data, window=8), tmp_path / "run", resume=True, given={"window"})
    other = tmp_path / "other.csv"
    other.write_text(Path(data).read_text().replace("10.", "11.", 1))
    with pytest.raises(UserError, match="differs from the data"):
        train(tiny(str(other)), tmp_path / "run", resume=True, given=set())
    with pytest.raises(UserError, match="nothing to resume|no run directory"):
        train(tiny(data), tmp_path / "nothing", resume=True, given=set())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    data = series_csv(tmp_path)
    calls = {"n": 0}
    real = train_module.loss_fn

    def poisoned(pred, target):  # finite for the first three epochs (3 batches each), then NaN
        calls["n"] += 1
        loss = real(pred, target)
        return loss * float("nan") if calls["n"] > 9 else loss

    monkeypatch.setattr(train_module, "loss_fn", poisoned)
    with pytest.raises(TrainingStopped, match="nan .*epoch 4.*checkpoint of epoch 3"):
        train(tiny(data, epochs=10, batch_size=12), tmp_path / "run", quiet=True)
    rows = read_metrics(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    _, meta = RunDir(tmp_path / "run").read_state()
    assert meta["epoch"] == 3
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values())


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lstmbyhand", *args]


def _wait_for_epochs(proc: subprocess.Popen, run: Path, n: int, timeout: float = 120) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if (run / "metrics.csv").exists() and len(read_metrics(run)) >= n:
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    raise AssertionError("training did not reach the expected epoch in time")


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_result(tmp_path):
    data = series_csv(tmp_path, 80)
    flags = ["--target", "y", "--window", "6", "--hidden", "8", "--batch-size", "4",
             "--patience", "0", "--quiet", "--epochs"]  # fmt: skip
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli("train", data, *flags, "1000", "--out", str(run)),
                            env=subprocess_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for_epochs(proc, run, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = len(read_metrics(run))  # whatever the kill left: a consistent checkpoint
    epochs = str(done_before + 3)  # --epochs may change on --resume
    from lstmbyhand.cli import main

    assert main(["train", data, *flags, epochs, "--out", str(run), "--resume"]) == 0
    assert main(["train", data, *flags, epochs, "--out", str(tmp_path / "straight")]) == 0
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, int(epochs) + 1))  # each epoch once
    straight = read_metrics(tmp_path / "straight")
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in straight]
    a, b = weights(run), weights(tmp_path / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    data = series_csv(tmp_path, 80)
    run = tmp_path / "run"
    args = ["train", data, "--target", "y", "--window", "6", "--hidden", "8", "--batch-size", "4",
            "--patience", "0", "--quiet", "--epochs", "500", "--out", str(run)]  # fmt: skip
    proc = subprocess.Popen(_cli(*args), env=subprocess_env(), stderr=subprocess.PIPE, text=True)
    _wait_for_epochs(proc, run, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err
    _, meta = RunDir(run).read_state()
    assert [int(r["epoch"]) for r in read_metrics(run)] == list(range(1, meta["epoch"] + 1))
    RunDir(run).read_weights()  # intact
