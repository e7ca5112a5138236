"""torchrun with 2 CPU processes (gloo, loopback only): identical weights, resume, evaluation."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import torch
import torch.distributed as dist
from helpers import subprocess_env

from lstmbyhand.cli import main
from lstmbyhand.forecast.rundir import RunDir


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = subprocess_env(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lstmbyhand", *args]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_two_processes_train_resume_and_evaluate(tmp_path, capsys):
    assert dist.is_available() and dist.is_gloo_available(), (
        "torch.distributed with gloo is required"
    )
    data = tmp_path / "s.csv"
    data.write_text("t,y\n" + "".join(f"{i},{(i * 37) % 17 + i * 0.5}\n" for i in range(70)))
    flags = [
        "train",
        str(data),
        "--target",
        "y",
        "--window",
        "6",
        "--hidden",
        "6",
        "--batch-size",
        "8",
        "--dropout",
        "0.2",
        "--layers",
        "2",
        "--patience",
        "0",
        "--base",
        "none",
        "--quiet",
    ]  # fmt: skip  (DDP is under test, not the base)
    first = torchrun(*flags, "--epochs", "3", "--out", str(tmp_path / "a"))
    # the ranks compare weight digests at the end; rank 0 alone reports
    assert first.stdout.count("weights identical on all") == 1
    assert json.loads((tmp_path / "a" / "config.json").read_text())["world_size"] == 2
    torchrun(*flags, "--epochs", "5", "--out", str(tmp_path / "a"), "--resume")
    torchrun(*flags, "--epochs", "5", "--out", str(tmp_path / "b"))
    with open(tmp_path / "a" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    a, b = RunDir(tmp_path / "a").read_weights()[0], RunDir(tmp_path / "b").read_weights()[0]
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed under torchrun == uninterrupted
    state = RunDir(tmp_path / "a").read_state()[0]
    assert "rng.torch.0" in state and "rng.torch.1" in state
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "--json"]) == 0
    methods = {
        "model",
        "naive",
        "AutoETS",
        "AutoARIMA",
        "AutoTheta",
    }  # no season: no seasonal naive
    assert set(json.loads(capsys.readouterr().out)["metrics"]) == methods
