"""Issue 18 items 1-3 and 7: a run is checked whole (every byte a command reads, the run id in every
file, dtypes, shapes, finite weights); one trainer at a time (an OS lock); a run is recognized by
its marker and `--force` removes only what lstmbyhand wrote; metrics.csv and the state agree after
a kill at any write."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import one_line_error as refused
from helpers import subprocess_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmbyhand.cli import main
from lstmbyhand.errors import UserError
from lstmbyhand.forecast import rundir
from lstmbyhand.forecast.config import RunConfig
from lstmbyhand.forecast.rundir import RunDir, save_tensors

pytestmark = pytest.mark.usefixtures("one_thread")

READ = (".lstmbyhand-run", "config.json", "weights.safetensors", "state.safetensors")


def data_file(folder: Path) -> Path:
    data = folder / "d.csv"
    if not data.exists():
        data.write_text("t,y\n" + "".join(f"{i},{(i * 7) % 11 + i / 3:.3f}\n" for i in range(40)))
    return data


def train_args(folder: Path, out: Path, epochs: int = 2, seed: int = 0) -> list[str]:
    return ["train", str(data_file(folder)), "--target", "y", "--window", "3", "--hidden", "2",
            "--epochs", str(epochs), "--quiet", "--base", "none", "--patience", "0",
            "--seed", str(seed), "--out", str(out)]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the same shape (different seeds) and their data."""
    root = tmp_path_factory.mktemp("integrity")
    for name, seed in (("a", 0), ("b", 1)):
        assert main(train_args(root, root / name, seed=seed)) == 0
    return root


@pytest.fixture
def run(runs, tmp_path):
    """A fresh copy of run a, free to damage."""
    copy = tmp_path / "run"
    shutil.copytree(runs / "a", copy)
    return copy


def resume(folder: Path, out: Path) -> list[str]:
    return [*train_args(folder, out, epochs=3), "--resume"]


# --- item 1: another run's files, edited metadata, dtypes, NaN -----------------------------


@pytest.mark.parametrize("name", ["state.safetensors", "weights.safetensors", "config.json"])
def test_a_file_from_another_run_of_the_same_shape_is_refused(runs, run, capsys, name):
    shutil.copy(runs / "b" / name, run / name)
    argv = resume(runs, run) if name == "state.safetensors" else ["evaluate", str(run), "--json"]
    refused(capsys, argv, "belongs to another run", name)


def _resign(path: Path, run: Path, edit) -> None:
    """Change a tensor file's content and rewrite it with a valid digest (a careful forger)."""
    tensors, meta = rundir.load_tensors(path, "file")
    tensors, meta = edit(tensors, meta)
    save_tensors(path, tensors, meta, RunDir(run).run_id)


def test_edited_metadata_is_refused(runs, run, capsys):
    state = run / "state.safetensors"
    data = state.read_bytes()
    assert b'lr\\": 0.005' in data  # JSON inside the header's JSON: quotes escaped
    state.write_bytes(data.replace(b'lr\\": 0.005', b'lr\\": 0.905'))  # Adam's lr, one byte
    refused(capsys, resume(runs, run), "training state", "damaged")
    state.write_bytes(data.replace(b'epoch\\": 2,', b'epoch\\": 7,', 1))
    refused(capsys, resume(runs, run), "training state", "damaged")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int32, torch.bool])
def test_weights_of_another_dtype_are_refused(run, capsys, dtype):
    _resign(run / "weights.safetensors", run,
            lambda t, m: ({k: v.to(dtype) for k, v in t.items()}, m))  # fmt: skip
    refused(capsys, ["evaluate", str(run), "--json"], "does not fit the model", str(dtype))


def test_state_of_another_dtype_is_refused(runs, run, capsys):
    _resign(run / "state.safetensors", run, lambda t, m: (
        {k: v.double() if k.startswith("optim.") else v for k, v in t.items()}, m))  # fmt: skip
    refused(capsys, resume(runs, run), "training state", "does not fit the model")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(runs, run, capsys, bad):
    _resign(run / "weights.safetensors", run,
            lambda t, m: ({k: torch.full_like(v, bad) for k, v in t.items()}, m))  # fmt: skip
    data = str(data_file(runs))
    for argv in (["evaluate", str(run), "--json"],
                 ["forecast", str(run), "--data", data, "--steps", "2", "--output",
                  str(run.parent / "f.csv")]):  # fmt: skip
        refused(capsys, argv, "NaN or infinite")
    assert not (run.parent / "f.csv").exists()
    _resign(run / "state.safetensors", run, lambda t, m: (
        {k: torch.full_like(v, bad) if k.startswith("model.") else v for k, v in t.items()},
        m))  # fmt: skip
    refused(capsys, resume(runs, run), "NaN or infinite")


# --- a hand-edited config.json, re-signed: every field is still checked --------------------


def _edit_config(run: Path, edit) -> None:
    config = json.loads((run / "config.json").read_text())
    config.pop("sha256")
    edit(config)
    (run / "config.json").write_bytes(rundir._signed_json(config))


CONFIG_EDITS = {
    "key missing": (lambda c: c.pop("scaler"), "'scaler' is missing"),
    "a list": (lambda c: c.__setitem__("settings", [1, 2]), "'settings' is missing or not"),
    "string number": (lambda c: c["settings"].__setitem__("hidden", "2"), "hidden"),
    "huge hidden": (lambda c: c["settings"].__setitem__("hidden", 1000000), "GiB"),
    "negative hidden": (lambda c: c["settings"].__setitem__("hidden", -5), "hidden"),
    "no layers": (lambda c: c["settings"].__setitem__("layers", 0), "layers"),
    "window disagrees": (lambda c: c["model"].__setitem__("window", 9), "disagrees"),
    "season text": (lambda c: c.__setitem__("season", "abc"), "'season'"),
    "format missing": (lambda c: c.pop("format"), "run format None"),
    "format unknown": (lambda c: c.__setitem__("format", 99), "run format 99"),
    "scale infinite": (lambda c: c["scaler"].__setitem__("scale", 1e999), "not usable"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_EDITS))
def test_hand_edited_config_is_one_line(run, capsys, case):
    edit, expected = CONFIG_EDITS[case]
    try:
        _edit_config(run, edit)
    except ValueError:  # an infinite value cannot even be written as JSON
        config = (run / "config.json").read_text().replace('"scale": ', '"scale": 1e999 + ', 1)
        (run / "config.json").write_text(config)
        expected = "not valid JSON"
    refused(capsys, ["evaluate", str(run), "--json"], expected)


def test_run_config_round_trips_and_checks_its_format(run):
    d = RunDir(run).read_config()
    config = RunConfig.from_dict(d, "c")
    assert config.to_dict() == d and config.format == 2
    with pytest.raises(UserError, match="run format 1"):
        RunConfig.from_dict({**d, "format": 1}, "c")


# --- property: no single-byte edit of a file a command reads is ever accepted ---------------


@settings(
    max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(which=st.sampled_from(READ), where=st.floats(0, 1, exclude_max=True),
       flip=st.integers(1, 255))  # fmt: skip
def test_no_single_byte_edit_is_accepted(runs, which, where, flip):
    original = (runs / "a" / which).read_bytes()
    edited = bytearray(original)
    at = int(where * len(edited))
    edited[at] ^= flip
    (runs / "a" / which).write_bytes(bytes(edited))
    try:
        r = RunDir(runs / "a")
        with pytest.raises(UserError):
            RunConfig.from_dict(r.read_config(), "config.json")
            r.read_weights()
            r.read_state()
    finally:
        (runs / "a" / which).write_bytes(original)


@pytest.fixture(scope="module")
def based(tmp_path_factory):
    """A run with the default statistical base: it stores the models' forecasts."""
    root = tmp_path_factory.mktemp("based")
    args = train_args(root, root / "run")
    args[args.index("--base") + 1] = "median"
    assert main(args) == 0
    assert (root / "run" / rundir.FORECASTS).is_file()
    return root / "run"


def test_no_single_byte_edit_of_the_statistical_forecasts_is_accepted(based):
    path = based / rundir.FORECASTS
    original = path.read_bytes()
    assert RunDir(based).read_statistical() is not None
    rng = random.Random(0)
    try:
        for at in sorted(rng.sample(range(len(original)), 300)):
            edited = bytearray(original)
            edited[at] ^= rng.randint(1, 255)
            path.write_bytes(bytes(edited))
            with pytest.raises(UserError, match="statistical forecasts"):
                RunDir(based).read_statistical()
    finally:
        path.write_bytes(original)


def test_statistical_forecasts_of_another_run_or_layout_are_refused(based, run, tmp_path, capsys):
    shutil.copy(based / rundir.FORECASTS, run / rundir.FORECASTS)  # into a run of another id
    refused(capsys, ["evaluate", str(run), "--json"], "belongs to another run", rundir.FORECASTS)
    copy = tmp_path / "based"
    shutil.copytree(based, copy)
    _resign(
        copy / rundir.FORECASTS,
        copy,
        lambda t, m: ({**t, "0.AutoETS.9": t[next(iter(t))].clone()}, m),
    )
    refused(capsys, ["evaluate", str(copy), "--json"], "layout", rundir.FORECASTS)


def test_edited_metrics_are_refused_on_resume(runs, run, capsys):
    metrics = run / "metrics.csv"
    data = bytearray(metrics.read_bytes())
    data[len(data) // 2] ^= 0x04
    metrics.write_bytes(bytes(data))
    refused(capsys, resume(runs, run), "metrics.csv does not match")


# --- item 2: the lock ----------------------------------------------------------------------


def test_a_second_trainer_is_refused_while_the_first_holds_the_lock(runs, run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", (  # flock(2) as RunDir.lock takes it
        "import fcntl, os, time; "
        f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); os.ftruncate(fd, 0); "
        "os.pwrite(fd, f'{os.getpid()}\\n'.encode(), 0); print('locked', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused(capsys, resume(runs, run), f"is being trained by pid {holder.pid}")
        refused(capsys, [*train_args(runs, run), "--force"], f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert main(resume(runs, run)) == 0  # the dead holder's lock is simply taken over


# --- item 3: a marker only lstmbyhand writes; --force removes only its own files -----------


def test_a_users_folder_with_a_config_json_is_not_a_run(runs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("config.json", "metrics.csv", "loss.png"):
        (mine / name).write_text("the user's")
    refused(capsys, ["evaluate", str(mine)], "not a lstmbyhand run")
    refused(capsys, [*train_args(runs, mine), "--force"], "not a lstmbyhand run")
    assert all((mine / n).read_text() == "the user's" for n in ("config.json", "metrics.csv"))


def test_force_removes_only_lstmbyhand_files_and_says_so(runs, run, capsys):
    assert main(["inspect", str(run), "--data", str(data_file(runs))]) == 0
    (run / "notes.txt").write_text("the user's")
    capsys.readouterr()
    assert main([*train_args(runs, run), "--force"]) == 0
    out = capsys.readouterr().out
    assert "--force: removed" in out and "gates.png" in out
    assert not (run / "gates.png").exists()  # described the old model
    assert (run / "notes.txt").read_text() == "the user's"


# --- item 3: metrics.csv and the state agree after a kill at any write ----------------------

KILL = (
    "import os, sys\n"
    "k, n = int(sys.argv[1]), [0]\n"
    "real = os.replace\n"
    "def replace(a, b):\n"
    "    n[0] += 1\n"
    "    if n[0] == k:\n"
    "        os.kill(os.getpid(), 9)  # SIGKILL with the new file written, before its rename\n"
    "    real(a, b)\n"
    "os.replace = replace\n"
    "from lstmbyhand.cli import main\n"
    "raise SystemExit(main(sys.argv[2:]))\n"
)


def test_state_and_metrics_agree_after_a_kill_inside_any_write(runs, tmp_path):
    """SIGKILL inside the k-th write (its temporary written, not yet renamed), for random k
    among the writes of a 3-epoch run (KILL_POINTS of them, 2 by default: raise it for a longer
    search); then resume: every epoch once, no temporaries."""
    writes = {"n": 0}
    real = os.replace

    def count(a, b):
        writes["n"] += 1
        real(a, b)

    os.replace = count
    try:
        assert main(train_args(runs, tmp_path / "counted", epochs=3)) == 0
    finally:
        os.replace = real
    points = int(os.environ.get("KILL_POINTS", "2"))  # each one a subprocess importing torch
    for k in random.Random(18).sample(range(1, writes["n"] + 1), points):
        out = tmp_path / f"kill{k}"
        argv = train_args(runs, out, epochs=3)
        proc = subprocess.run([sys.executable, "-c", KILL, str(k), *argv], env=subprocess_env(),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == -9, (k, proc.stderr)
        if (out / "state.safetensors").exists():
            _, meta = RunDir(out).read_state()
            rows = (out / "metrics.csv").read_text().splitlines()[1:]
            assert meta["epoch"] - len(rows) in (0, 1)  # at most the last epoch's row behind
            assert main([*argv, "--resume"]) == 0
        else:
            assert main([*argv, "--force"]) == 0
        rows = (out / "metrics.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3], k
        assert not [n for n in os.listdir(out) if ".tmp-" in n], k


# --- a power loss between an epoch's renames (one folder fsync for the three files) ----------

EPOCH_FILES = ("weights.safetensors", "state.safetensors", "metrics.csv")


@pytest.mark.parametrize("lost", range(1, 8))  # which renames of epoch 2 did not reach the disk
def test_any_mix_of_an_epochs_old_and_new_files_resumes_to_the_same_weights(runs, tmp_path, lost):
    """`write_checkpoint` renames weights, state and metrics.csv with one folder fsync after the
    three, so a power loss may keep any of the renames and lose the others (each file whole, old
    or new). Every such mix of epoch 1's and epoch 2's files must resume, and end with the weights,
    bit for bit, and the losses of an uninterrupted 3-epoch run."""
    whole = tmp_path / "whole"
    assert main(train_args(runs, whole, epochs=3)) == 0
    old, new = tmp_path / "old", tmp_path / "mixed"
    assert main(train_args(runs, old, epochs=1)) == 0
    shutil.copytree(old, new)
    assert main([*train_args(runs, new, epochs=2), "--resume"]) == 0
    for i, name in enumerate(EPOCH_FILES):
        if lost >> i & 1:
            shutil.copyfile(old / name, new / name)
    assert main(resume(runs, new)) == 0
    got, want = RunDir(new).read_weights()[0], RunDir(whole).read_weights()[0]
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    state, whole_state = RunDir(new).read_state(), RunDir(whole).read_state()
    assert all(torch.equal(state[0][k], whole_state[0][k]) for k in whole_state[0])

    def losses(run: Path) -> list[list[str]]:
        return [r.split(",")[:3] for r in (run / "metrics.csv").read_text().splitlines()[1:]]

    assert losses(new) == losses(whole) and [r[0] for r in losses(new)] == ["1", "2", "3"]


def test_metrics_one_epoch_ahead_is_accepted_but_not_an_edited_or_longer_one(runs, run, capsys):
    """The row a lost state rename leaves ahead must be the next epoch's, well formed, and only one."""
    rows = RunDir(run).read_state()[1]["history"]
    base = rundir.render_metrics(rows)
    ahead = base + f"{len(rows) + 1},0.5,0.25,0.01,0.1\n".encode()
    (run / "metrics.csv").write_bytes(ahead)
    RunDir(run).check_metrics(rows)  # accepted
    for bad in (
        base + f"{len(rows) + 2},0.5,0.25,0.01,0.1\n".encode(),  # not the next epoch
        ahead + f"{len(rows) + 2},0.5,0.25,0.01,0.1\n".encode(),  # two ahead
        base + f"{len(rows) + 1},0.5,nan,0.01,0.1\n".encode(),  # not finite
        base + f"{len(rows) + 1},0.5,0.25\n".encode(),  # cut short
        base + f"{len(rows) + 1},0.5,0.25,0.01,0.1".encode(),  # no line end
    ):
        (run / "metrics.csv").write_bytes(bad)
        with pytest.raises(UserError, match="metrics.csv does not match"):
            RunDir(run).check_metrics(rows)
