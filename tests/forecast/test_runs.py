"""The run directory: atomic files, safetensors with checksums, damaged files refused, no overwrite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lstmbyhand.errors import UserError
from lstmbyhand.forecast import checkpoint, files
from lstmbyhand.forecast.checkpoint import Progress
from lstmbyhand.forecast.optim import Adam
from lstmbyhand.forecast.rundir import RunDir, atomic_write, load_tensors, save_tensors


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write(p, b"old")
    atomic_write(p, b"new contents")
    assert p.read_bytes() == b"new contents"
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]


def test_atomic_write_crash_before_rename_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic_write(p, b"good")

    def crash(*a, **k):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write(p, b"half")
    assert p.read_bytes() == b"good"


def test_tensors_round_trip_through_plain_safetensors(tmp_path):
    p = tmp_path / "t.safetensors"
    t = {"a": torch.randn(3, 4), "b": torch.arange(5), "rng": torch.get_rng_state()}
    save_tensors(p, t, {"epoch": 3, "nested": {"x": [1, 2]}})
    back, meta = load_tensors(p, "file")
    assert meta == {"epoch": 3, "nested": {"x": [1, 2]}}
    for k in t:
        assert torch.equal(back[k], t[k])
    # the file is ordinary safetensors: the reference loader reads it too
    assert torch.equal(load_file(p)["a"], t["a"])


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_tensor_files_are_refused(tmp_path, damage):
    p = tmp_path / "w.safetensors"
    save_tensors(p, {"w": torch.randn(64, 64)}, {})
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-100] ^= 0xFF  # one byte of tensor data: safetensors itself cannot tell
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"\x80\x04not safetensors at all" * 10)
    p.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged|truncated"):
        load_tensors(p, "weights file")


def test_missing_tensor_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="missing"):
        load_tensors(tmp_path / "nope.safetensors", "weights file")


def test_create_never_overwrites_a_run_without_force(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create(force=False)
    run.write_config({"run_id": run.run_id, "model": {}, "data": {}})
    run.unlock()
    with pytest.raises(UserError, match="--resume.*--force"):
        RunDir(tmp_path / "run").create(force=False)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    again = RunDir(tmp_path / "run")
    assert "config.json" in again.create(force=True)
    again.unlock()
    assert not (tmp_path / "run" / "config.json").exists()
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only run files are removed
    assert again.run_id != run.run_id  # a new run, a new id


def test_create_refuses_a_non_empty_foreign_directory(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        RunDir(tmp_path).create(force=False)
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(UserError, match="is a file"):
        RunDir(f).create(force=True)


def test_incomplete_run_is_named(tmp_path):
    with pytest.raises(UserError, match="no run directory"):
        RunDir(tmp_path / "absent").require("config.json")
    with pytest.raises(UserError, match="not a lstmbyhand run"):
        RunDir(tmp_path).require("config.json")
    RunDir(tmp_path).create(force=False)
    with pytest.raises(UserError, match="missing config.json, weights.safetensors"):
        RunDir(tmp_path).require("config.json", "weights.safetensors")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        RunDir(tmp_path).read_config()


def test_metrics_csv_is_rewritten_from_history(tmp_path):
    run = RunDir(tmp_path)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e, "lr": 0.1, "seconds": 0.5}
            for e in (1, 2, 3)]  # fmt: skip
    run.write_metrics(rows[:2])
    run.write_metrics(rows)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_loss,lr,seconds"
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3]


def test_checkpoint_restores_optimizer_and_rng_exactly(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
    progress = Progress(3, 0.5, 2, 1, [{"epoch": 1}])
    best = {k: v.clone() for k, v in model.state_dict().items()}
    tensors, meta = checkpoint.pack(model, best, opt, progress)
    save_tensors(tmp_path / "s.safetensors", tensors, meta)
    expected_next = torch.randn(5)  # what the RNG gives right after the checkpoint

    model2 = torch.nn.Linear(3, 2)
    opt2 = Adam(model2.parameters(), lr=0.5)
    t2, m2 = load_tensors(tmp_path / "s.safetensors", "state")
    best2, progress2 = checkpoint.unpack(t2, m2, model2, opt2, "s")
    assert torch.equal(torch.randn(5), expected_next)
    assert progress2 == progress and opt2.t == 3 and opt2.lr == 0.01
    assert all(torch.equal(best2[k], best[k]) for k in best)
    for a, b in zip(opt.m + opt.v, opt2.m + opt2.v, strict=True):
        assert torch.equal(a, b)
    x = torch.randn(4, 3)  # one more identical step keeps them identical
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    assert torch.equal(model.weight, model2.weight)


def test_state_from_another_model_is_refused(tmp_path):
    small, big = torch.nn.Linear(3, 2), torch.nn.Linear(3, 4)
    tensors, meta = checkpoint.pack(small, small.state_dict(), Adam(small.parameters()), Progress())
    with pytest.raises(UserError, match="does not match this run"):
        checkpoint.unpack(tensors, meta, big, Adam(big.parameters()), "state")


def test_atomic_write_all_writes_every_file_and_fsyncs_the_folder_once(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    atomic_write(a, b"old a")
    synced, renamed = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst):
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.atomic_write_all([(a, b"new a"), (b, b"b"), (c, b"c")])
    assert [p.read_bytes() for p in (a, b, c)] == [b"new a", b"b", b"c"]
    assert renamed == ["a", "b", "c"]  # in the given order
    assert synced == [False, False, False, True]  # every file before any rename, the folder once
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]


def test_atomic_write_all_failing_midway_leaves_no_temporaries(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    atomic_write(a, b"old a")
    atomic_write(b, b"old b")
    real, count = os.replace, {"n": 0}

    def replace(src, dst):
        count["n"] += 1
        if count["n"] == 2:
            raise KeyboardInterrupt  # after the first rename
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_all([(a, b"new a"), (b, b"new b")])
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"old b")  # a prefix of the renames
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]
    with pytest.raises(ValueError, match="one folder"):
        files.atomic_write_all([(a, b"x"), (tmp_path / "sub" / "b", b"y")])


def test_serialize_gives_safetensors_save_bytes():
    """rundir.serialize skips `safetensors.torch.save`'s Python checks; its bytes are save's."""
    from safetensors.torch import save as st_save

    from lstmbyhand.forecast.rundir import serialize

    g = torch.Generator().manual_seed(0)
    tensors = {
        "w": torch.randn(5, 3, generator=g),
        "d": torch.randn(7, generator=g, dtype=torch.float64),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "steps": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "rng": torch.get_rng_state(),  # uint8
        "mask": torch.tensor([True, False, True]),
        "half": torch.randn(4, generator=g).to(torch.bfloat16),
        "slice": torch.randn(10, generator=g)[3:7],  # an offset into its storage
    }
    for meta in ({}, {"lstmbyhand": '{"a": 1}'}):
        assert serialize(tensors, meta) == st_save(tensors, metadata=meta)
    assert serialize({}, {"k": "v"}) == st_save({}, metadata={"k": "v"})


def test_metrics_text_extends_what_it_rendered_and_renders_a_new_history_afresh():
    from lstmbyhand.forecast.rundir import MetricsText, render_metrics

    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": None if e == 2 else 2.0 / e,
             "lr": 0.1, "seconds": 0.5 + e} for e in range(1, 6)]  # fmt: skip
    text = MetricsText()
    for n in (0, 1, 2, 5, 3):  # growing, then shorter (a resume from an earlier state)
        assert text(rows[:n]) == render_metrics(rows[:n])
    edited = [dict(r) for r in rows]
    edited[1]["train_loss"] = 9.0  # an earlier row differs: not the history seen
    assert text(edited) == render_metrics(edited)
    assert text(rows) == render_metrics(rows)
