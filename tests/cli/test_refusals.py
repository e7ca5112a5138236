"""Issue 20 items 3 and 6, issue 18 items 4-6: numbers that are not numbers, impossible settings and
guesses about the data are refused up front with one line and exit code 2; the messages say what
really happened."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import pytest
from helpers import one_line_error as refused
from helpers import subprocess_env

from lstmbyhand.cli import main
from lstmbyhand.cli.train import default_out
from lstmbyhand.errors import UserError
from lstmbyhand.forecast import recursive
from lstmbyhand.forecast.config import TrainSettings

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--window", "3", "--hidden", "2", "--epochs", "1", "--quiet", "--base", "none"]


def csv_file(folder: Path, rows: list[str], header: str = "t,y", name: str = "d.csv") -> str:
    p = folder / name
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(p)


def series(folder: Path, values=None, n: int = 40) -> str:
    values = values or [f"{(i * 7) % 11 + i / 3:.3f}" for i in range(n)]
    return csv_file(folder, [f"{i},{v}" for i, v in enumerate(values)])


def train(folder: Path, data: str, *flags: str) -> list[str]:
    return ["train", data, "--target", "y", *TINY, "--out", str(folder / "run"), *flags]


# --- issue 20 item 3: numbers that are not numbers -----------------------------------------


@pytest.mark.parametrize("size", ["1e300", "1e-300", "-3e200"])
def test_values_that_overflow_the_scaler_are_refused(tmp_path, capsys, size):
    data = series(tmp_path, [f"{k % 5 + 1}{size[size.index('e') :]}" for k in range(40)])
    refused(capsys, train(tmp_path, data), "outside what training can square", "rescale")
    assert not (tmp_path / "run").exists()  # before any work


def test_a_season_longer_than_the_training_part_is_refused(tmp_path, capsys):
    for season in ("100", str(10**30)):
        refused(capsys, train(tmp_path, series(tmp_path), "--season", season),
                "not shorter than the training part")  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags", [["--lr", "inf"], ["--lr", "nan"], ["--lr", "-1"],
                                   ["--epochs", "0"]])  # fmt: skip
def test_demo_refuses_numbers_it_cannot_train_with(tmp_path, capsys, flags):
    refused(capsys, ["demo", "--out", str(tmp_path), *flags], flags[0])


def test_a_non_finite_forecast_is_never_written(tmp_path, capsys, monkeypatch):
    data = series(tmp_path)
    assert main(train(tmp_path, data)) == 0
    real = recursive.recursive_forecast
    monkeypatch.setattr(recursive, "recursive_forecast",
                        lambda *a: real(*a) * float("inf"))  # fmt: skip
    out = tmp_path / "f.csv"
    refused(capsys, ["forecast", str(tmp_path / "run"), "--data", data, "--steps", "2",
                     "--output", str(out)], "not a number", "nothing was written")  # fmt: skip
    assert not out.exists()


# --- issue 20 item 6: messages that said the wrong thing -----------------------------------


def test_settings_check_names_text_and_bool(tmp_path):
    with pytest.raises(UserError, match="--window must be a whole number"):
        TrainSettings("d.csv", "y", window="12").check()
    with pytest.raises(UserError, match="--lr must be a number, got '0.1'"):
        TrainSettings("d.csv", "y", lr="0.1").check()
    with pytest.raises(UserError, match="--season must be a whole number ≥ 0, got True"):
        TrainSettings("d.csv", "y", season=True).check()


def test_data_from_a_pipe_is_read_not_called_empty(tmp_path, capsys):
    data = Path(series(tmp_path))
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data.read_bytes()))
    writer.start()
    assert main(train(tmp_path, str(fifo))) == 0
    writer.join(timeout=30)
    refused(capsys, ["evaluate", str(tmp_path / "run")], "was a pipe", "--data")
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(data), "--no-baselines"]) == 0


def test_a_constant_series_trains_without_warnings(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matplotlib warning (log axis of zeros) fails here
        assert main(train(tmp_path, series(tmp_path, ["5"] * 40), "--epochs", "2")) == 0
    assert capsys.readouterr().err == ""


def test_importing_plots_leaves_the_backend_alone():
    code = (
        "import sys, matplotlib; matplotlib.use('svg'); "
        "from lstmbyhand.forecast import plots; "
        "plots.loss_curve([{'epoch': 1, 'train_loss': 1.0, 'val_loss': 2.0}], sys.argv[1]); "
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    with tempfile.TemporaryDirectory() as d:
        done = subprocess.run([sys.executable, "-c", code, f"{d}/l.png"], capture_output=True,
                              text=True, env=subprocess_env(), timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["svg", "False"]
        assert Path(f"{d}/l.png").read_bytes()[:4] == b"\x89PNG"


# --- issue 18 item 4: one line, exit 2 ------------------------------------------------------


def test_abbreviated_flags_are_refused(tmp_path, capsys):
    data = series(tmp_path)
    assert main(train(tmp_path, data)) == 0
    before = (tmp_path / "run" / "weights.safetensors").read_bytes()
    refused(capsys, train(tmp_path, data, "--fo"), "unrecognized arguments: --fo")
    refused(capsys, ["evaluate", str(tmp_path / "run"), "--js"], "--js")
    assert (tmp_path / "run" / "weights.safetensors").read_bytes() == before


@pytest.mark.parametrize("flags, expected", [
    (["--seed", str(2**64)], "--seed must be below 2**63"),
    (["--horizon", "100000000"], "needs at least"),
    (["--layers", "100000"], "--layers must be at most 64"),
    (["--layers", "40", "--hidden", "100000"], "GiB"),
    (["--hidden", "1000000"], "GiB"),
    (["--val-fraction", "1e-9"], "needs at least 500000001"),
    (["--val-fraction", "0.5", "--test-fraction", "0.4999999"], "needs at least"),
])  # fmt: skip
def test_impossible_settings_are_refused_up_front(tmp_path, capsys, flags, expected):
    refused(capsys, train(tmp_path, series(tmp_path), *flags), expected)
    assert not (tmp_path / "run").exists()


def test_a_huge_batch_size_is_one_batch(tmp_path):
    assert main(train(tmp_path, series(tmp_path), "--batch-size", str(10**30))) == 0


def test_omp_num_threads_that_is_not_a_number(tmp_path, capsys, monkeypatch):
    data = series(tmp_path)
    assert main(train(tmp_path, data)) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "abc")
    refused(capsys, ["evaluate", str(tmp_path / "run")], "OMP_NUM_THREADS", "'abc'")


def test_out_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, ["train", series(tmp_path), "--target", "y", *TINY, "--out",
                     str(tmp_path / "file" / "run")], "file")  # fmt: skip


@pytest.fixture
def public_dir():
    """A folder the unprivileged user can enter (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="lstmbyhand-perm-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(folder: Path, *commands: list[str]) -> tuple[list[str], list[str]]:
    """Run each command through `main` in one unprivileged process: (exit codes, stderr lines)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is absent: cannot run as an unprivileged user")
    mpl = folder / "mpl"  # matplotlib's cache: the user's home is root's
    mpl.mkdir(exist_ok=True)
    mpl.chmod(0o777)
    script = ("import json, sys; from lstmbyhand.cli import main; "
              "print(json.dumps([main(argv) for argv in json.loads(sys.argv[1])]))")  # fmt: skip
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
           script, json.dumps(commands)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd="/",
                          env=subprocess_env(OMP_NUM_THREADS="1", MPLCONFIGDIR=str(mpl)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr.strip().splitlines()


def test_permission_denied_as_an_unprivileged_user(public_dir):
    data = Path(series(public_dir))
    secret = public_dir / "secret.csv"
    shutil.copy(data, secret)
    secret.chmod(0o600)  # root's alone
    data.chmod(0o644)
    locked = public_dir / "locked"
    locked.mkdir(mode=0o555)  # nobody may create anything in here
    codes, lines = as_nobody(
        public_dir,
        ["train", str(secret), "--target", "y", *TINY, "--out", str(public_dir / "r1")],
        ["train", str(data), "--target", "y", *TINY, "--out", str(locked / "run")],
    )
    assert codes == [2, 2] and len(lines) == 2, lines
    assert "permission denied" in lines[0] and "secret.csv" in lines[0]
    assert "Permission denied" in lines[1] and "locked" in lines[1]


# --- issue 18 item 6: no silent guesses ------------------------------------------------------


def test_duplicate_column_names_are_refused(tmp_path, capsys):
    data = csv_file(tmp_path, [f"{i},{i},{i * 2}" for i in range(40)], header="t,y,y")
    refused(capsys, train(tmp_path, data), "'y' more than once", "columns 2, 3")


@pytest.mark.parametrize("rows, what", [
    ([f"{(i * 7) % 40},{i}" for i in range(40)], "goes back"),
    ([f"{i // 2},{i}" for i in range(40)], "repeats"),
    ([f"2024-01-{1 + (i * 7) % 28:02d},{i}" for i in range(28)], "goes back"),
])  # fmt: skip
def test_unsorted_or_repeated_auto_detected_time_is_refused(tmp_path, capsys, rows, what):
    data = csv_file(tmp_path, rows)
    refused(capsys, train(tmp_path, data), what, "sort the file", "--time ''")
    assert main(train(tmp_path, data, "--time", "", "--val-fraction", "0.2",
                      "--test-fraction", "0.2")) == 0  # fmt: skip


def test_mixed_time_zones_are_refused(tmp_path, capsys):
    rows = [f"2024-01-{d:02d}T00:00{'+01:00' if d < 15 else '+02:00'},{d}" for d in range(1, 29)]
    refused(capsys, train(tmp_path, csv_file(tmp_path, rows), "--time", "t"),
            "mixes time zones", "UTC")  # fmt: skip


def test_default_run_dir_stays_inside_runs():
    for target in ("../x", "/etc/passwd", "..", "a/../../b"):
        out = Path(default_out("data.csv", target))
        assert out.parent == Path("runs") and ".." not in out.parts and out.name
