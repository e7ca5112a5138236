"""torchrun with 2 CPU processes (gloo, loopback only): series sharded across ranks, the union-batch
reference, identical weights, resume, evaluation, a bad cell only one rank reads stopping both;
the sharding itself in one process."""

from __future__ import annotations

import csv
import itertools
import json
import random
import subprocess
import sys
from dataclasses import replace

import numpy as np
import torch
import torch.distributed as dist
from helpers import subprocess_env
from torch.utils.data import DataLoader, TensorDataset

from lstmbyhand.cli import main
from lstmbyhand.forecast import distributed
from lstmbyhand.forecast.baselines import stored
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.distributed import ShardSampler
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.pool import assign, load_panel, prepare_pool
from lstmbyhand.forecast.rundir import RunDir
from lstmbyhand.forecast.train import (
    loaders,
    member_row,
    read_run_config,
    series_rows,
    stored_forecasts,
    validation_windows,
)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = subprocess_env(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lstmbyhand", *args]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def write_long(path, lengths: dict[str, int]) -> None:
    """Long data (unique_id, ds, y): one series per id, of its own length and shape."""
    rows = [f"{k},{i},{(i * (7 + j)) % 17 + i * 0.5 + 10 * j}\n"
            for j, (k, n) in enumerate(lengths.items()) for i in range(n)]  # fmt: skip
    path.write_text("unique_id,ds,y\n" + "".join(rows))


def test_assign_is_longest_first_and_within_grahams_bound():
    # by hand: 9 -> 0, 7 -> 1, 5 -> 1 (7 < 9), 3 -> 0 (9 < 12), 2 -> 0 (12 = 12: the lower rank)
    assert assign([5, 9, 2, 7, 3], 2) == [1, 0, 0, 1, 0]
    rng = random.Random(0)
    for _ in range(30):  # Graham (1969): longest-first is within 4/3 - 1/(3m) of the optimum
        counts, m = [rng.randint(1, 40) for _ in range(rng.randint(2, 8))], rng.randint(2, 3)
        owner = assign(counts, m)
        load = [sum(c for c, r in zip(counts, owner, strict=True) if r == q) for q in range(m)]
        best = min(max(sum(c for c, r in zip(counts, o, strict=True) if r == q) for q in range(m))
                   for o in itertools.product(range(m), repeat=len(counts)))  # fmt: skip
        assert sum(load) == sum(counts) and max(load) <= (4 / 3 - 1 / (3 * m)) * best + 1e-9


def test_shards_are_disjoint_cover_every_series_and_fall_back_to_windows(tmp_path):
    data = tmp_path / "long.csv"
    write_long(data, {"a": 40, "b": 90, "c": 60, "d": 55, "e": 5})  # e: too short, skipped
    s = TrainSettings(data=str(data), target="y", window=6, base="none")
    full = prepare_pool(s, load_panel(s))
    shards = [prepare_pool(s, load_panel(s), shard=(r, 3)) for r in range(3)]
    ids = [set(p.ids) for p in shards]
    assert all(p.sharded for p in shards) and all(ids)
    assert sum(map(len, ids)) == len(set.union(*ids)) and set.union(*ids) == set(full.ids)
    assert all(p.skipped == {"e": 5} for p in shards)
    rows = {m.series.id: member_row(m) for m in full.members}  # fitted on the whole file
    assert all(member_row(m) == rows[m.series.id] for p in shards for m in p.members)
    # one series under 2 ranks: every rank prepares it and takes every 2nd shuffled window
    one = tmp_path / "one.csv"
    one.write_text("t,y\n" + "".join(f"{i},{i % 5}\n" for i in range(70)))
    s1 = replace(s, data=str(one))
    pools = [prepare_pool(s1, load_panel(s1), shard=(r, 2)) for r in range(2)]
    assert not any(p.sharded for p in pools)
    taken = [list(loaders(p, s1, r, 2)[0].sampler) for r, p in enumerate(pools)]
    assert sorted(taken[0] + taken[1]) == list(range(pools[0].count("train")))
    # a rank with fewer windows repeats its own, to the largest rank's count
    took = list(ShardSampler(3, 7, seed=1))
    assert sorted(took[:3]) == [0, 1, 2] and took[3:6] == took[:3] and took[6] == took[0]


def reference(run, data) -> dict[str, torch.Tensor]:
    """The run re-trained in this process without DDP: each step's gradient is that of the mean
    of the two ranks' batch losses (the union batch, equal halves), torch.optim.Adam, each rank's
    dropout drawn from its own copy of the RNG as its process would."""
    s = replace(read_run_config(RunDir(run)).settings, data=str(data))
    shards = [prepare_pool(s, load_panel(s), shard=(r, 2)) for r in range(2)]
    sets = [TensorDataset(*p.tensors("train")) for p in shards]
    steps = max(map(len, sets))
    batch = min(s.batch_size, steps)
    samplers = [ShardSampler(len(d), steps, s.seed) for d in sets]
    loaders_ = [
        DataLoader(d, batch_size=batch, sampler=q) for d, q in zip(sets, samplers, strict=True)
    ]
    torch.manual_seed(s.seed)
    model = Forecaster(s.model)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    states = [torch.get_rng_state(), torch.get_rng_state()]

    def on(r, f):  # f() with rank r's RNG
        torch.set_rng_state(states[r])
        out = f()
        states[r] = torch.get_rng_state()
        return out

    model.train()
    for epoch in range(1, s.epochs + 1):
        for q in samplers:
            q.set_epoch(epoch)
        its = [on(r, lambda r=r: iter(loaders_[r])) for r in range(2)]
        for _ in range(len(loaders_[0])):
            losses = []
            for r in range(2):
                x, y = next(its[r])
                losses.append(on(r, lambda x=x, y=y: torch.mean((model(x) - y) ** 2)))
            opt.zero_grad()
            ((losses[0] + losses[1]) / 2).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip)
            opt.step()
    return model.state_dict()


def test_two_processes_shard_series_train_resume_and_evaluate(tmp_path, capsys):
    assert dist.is_available() and dist.is_gloo_available(), (
        "torch.distributed with gloo is required"
    )
    data = tmp_path / "s.csv"
    write_long(data, {"A": 70, "B": 40, "C": 36})  # A alone on one rank, B and C on the other
    flags = [
        "train",
        str(data),
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
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["world_size"] == 2
    s = read_run_config(RunDir(tmp_path / "a")).settings
    whole = prepare_pool(s, load_panel(s))  # one process, every series: the same scalers
    assert config["panel"]["series"] == json.loads(
        json.dumps([member_row(m) for m in whole.members])
    )
    torchrun(*flags, "--epochs", "5", "--out", str(tmp_path / "a"), "--resume")
    torchrun(*flags, "--epochs", "5", "--out", str(tmp_path / "b"))
    with open(tmp_path / "a" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    a, b = RunDir(tmp_path / "a").read_weights()[0], RunDir(tmp_path / "b").read_weights()[0]
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed under torchrun == uninterrupted
    state = RunDir(tmp_path / "b").read_state()[0]
    assert "rng.torch.0" in state and "rng.torch.1" in state
    want = reference(tmp_path / "b", data)
    for k, v in want.items():
        torch.testing.assert_close(state[f"model.{k}"], v, atol=1e-6, rtol=0)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    methods = {
        "model",
        "naive",
        "AutoETS",
        "AutoARIMA",
        "AutoTheta",
    }  # no season: no seasonal naive
    assert set(report["metrics"]) == methods and set(report["series"]) == {"A", "B", "C"}


def test_rank_0_gathers_what_one_process_has(tmp_path, monkeypatch):
    """Sharded, rank 0 joins the ranks' series rows, statistical forecasts and validation windows
    (the gather replaced by handing rank 1's parts over): the same as one process over the file."""
    data = tmp_path / "s.csv"
    write_long(data, {"A": 50, "B": 40, "C": 36})
    s = TrainSettings(data=str(data), target="y", window=6, base="AutoETS")
    whole = prepare_pool(s, load_panel(s))
    shards = [prepare_pool(s, load_panel(s), shard=(r, 2)) for r in range(2)]
    assert [p.ids for p in shards] == [["A"], ["B", "C"]]

    def on_rank_0(f):
        sent: list = []
        monkeypatch.setattr(distributed, "gather", lambda obj: sent.append(obj))  # rank 1: None
        assert f(shards[1]) is None
        monkeypatch.setattr(distributed, "gather", lambda obj: [obj, *sent])
        return f(shards[0])

    assert on_rank_0(series_rows) == [member_row(m) for m in whole.members]
    x, y = on_rank_0(validation_windows)
    want = whole.tensors("val")
    assert torch.equal(x, want[0]) and torch.equal(y, want[1])
    arrays, meta = on_rank_0(stored_forecasts)
    want_arrays, want_meta = stored(whole.members)
    assert meta == want_meta and want_arrays and set(arrays) == set(want_arrays)
    assert all(np.array_equal(arrays[k], want_arrays[k]) for k in arrays)


def test_a_bad_cell_in_one_ranks_series_stops_both_with_the_one_process_line(tmp_path, capsys):
    """Each rank reads only its own series' rows; the bad cell is in B, which rank 1 holds: both
    ranks print the line one process prints (and exit 2) instead of rank 0 training on alone."""
    data = tmp_path / "bad.csv"
    write_long(data, {"A": 70, "B": 40, "C": 36})  # A on rank 0; B and C on rank 1
    lines = data.read_text().splitlines()
    lines[70 + 5] = "B,5,oops"
    data.write_text("\n".join(lines) + "\n")
    flags = ["train", str(data), "--window", "6", "--base", "none", "--quiet"]
    assert main([*flags, "--out", str(tmp_path / "one")]) == 2
    line = capsys.readouterr().err.strip()
    assert "series 'B'" in line and "'oops'" in line
    env = subprocess_env(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lstmbyhand", *flags, "--out", str(tmp_path / "two")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.count(line) == 2, proc.stderr[-3000:]
    assert not (tmp_path / "two").exists()
