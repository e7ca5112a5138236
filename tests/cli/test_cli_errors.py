"""Every user mistake: one line on stderr naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmbyhand.cli import main

TINY = ["--window", "3", "--hidden", "2", "--epochs", "1", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def one_line_error(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI; check exit 2 and a single stderr line containing every `expected` piece."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("lstmbyhand"), err
    assert "Traceback" not in err
    for piece in expected:
        assert piece in lines[0], lines[0]
    return lines[0]


def csv_file(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> str:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def good_csv(tmp_path: Path, n: int = 40) -> str:
    return csv_file(
        tmp_path, "t,y\n" + "".join(f"{i},{(i * 7) % 11 + i / 3:.3f}\n" for i in range(n))
    )


# --- the data file ----------------------------------------------------------------------------


def test_missing_file(tmp_path, capsys):
    one_line_error(capsys, ["train", str(tmp_path / "nope.csv"), "--target", "y"],
                   "no such file", "nope.csv", "check the path")  # fmt: skip


def test_empty_file_and_header_only(tmp_path, capsys):
    one_line_error(capsys, ["train", csv_file(tmp_path, ""), "--target", "y"], "is empty")
    one_line_error(capsys, ["train", csv_file(tmp_path, "t,y\n"), "--target", "y"], "no data rows")


def test_unreadable_files(tmp_path, capsys):
    one_line_error(capsys, ["train", str(tmp_path), "--target", "y"], "is a directory")
    binary = csv_file(tmp_path, b"t,y\n1,\xff\xfe\x00\x81\n")
    one_line_error(capsys, ["train", binary, "--target", "y"], "UTF-8")


def test_no_such_column_lists_the_columns(tmp_path, capsys):
    path = good_csv(tmp_path)
    one_line_error(capsys, ["train", path, "--target", "price"],
                   "no column 'price'", "'t', 'y'", "--target")  # fmt: skip
    one_line_error(capsys, ["train", path, "--target", "y", "--time", "date"],
                   "no column 'date'", "--time")  # fmt: skip


def test_non_numeric_cell_names_row_and_column(tmp_path, capsys):
    path = csv_file(tmp_path, "t,y\n1,1.5\n2,2.5\n3,abc\n4,3\n")
    one_line_error(capsys, ["train", path, "--target", "y"],
                   "non-numeric value 'abc'", "column 'y'", "row 3", "line 4")  # fmt: skip


def test_missing_values_need_fill(tmp_path, capsys):
    path = csv_file(tmp_path, "t,y\n1,1\n2,\n3,NA\n4,4\n")
    one_line_error(capsys, ["train", path, "--target", "y"],
                   "2 missing value(s)", "row 2", "--fill interpolate")  # fmt: skip


def test_infinite_values(tmp_path, capsys):
    path = csv_file(tmp_path, "t,y\n1,1\n2,inf\n3,3\n")
    one_line_error(capsys, ["train", path, "--target", "y"], "infinite value", "row 2")


def test_time_column_out_of_order(tmp_path, capsys):
    path = csv_file(tmp_path, "day,y\n2024-01-02,1\n2024-01-01,2\n2024-01-03,3\n")
    one_line_error(capsys, ["train", path, "--target", "y", "--time", "day"],
                   "not strictly increasing", "row 2", "sort the file")  # fmt: skip


def test_series_too_short_says_the_minimum(tmp_path, capsys):
    path = good_csv(tmp_path, 20)
    line = one_line_error(capsys, ["train", path, "--target", "y", "--window", "24"],
                          "has 20 values", "needs at least")  # fmt: skip
    need = int(line.split("needs at least ")[1].split(";")[0])
    out = tmp_path / "ok"
    assert main(["train", good_csv(tmp_path, need), "--target", "y", *TINY[2:],
                 "--window", "24", "--out", str(out)]) == 0  # fmt: skip


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--window", "0"], "window must be"),
        (["--horizon", "-1"], "horizon must be"),
        (["--lr", "0"], "--lr must be a positive number"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--val-fraction", "1.5"], "--val-fraction must be at least 0 and below 1"),
        (["--test-fraction", "-0.1"], "--test-fraction must be at least 0 and below 1"),
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], "must be below 1"),
        (["--epochs", "0"], "--epochs must be"),
        (["--batch-size", "0"], "--batch-size must be"),
        (["--hidden", "0"], "--hidden must be"),
        (["--dropout", "1"], "--dropout must be in [0, 1)"),
        (["--clip", "-1"], "--clip must be"),
        (["--patience", "-2"], "--patience must be"),
        (["--season", "-12"], "--season must be"),
        (["--fill", "zero"], "--fill must be one of"),
        (["--scaling", "minmax"], "--scaling must be one of"),
        (["--window", "ten"], "invalid int value: 'ten'"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_invalid_settings(tmp_path, capsys, flags, expected):
    one_line_error(capsys, ["train", good_csv(tmp_path), "--target", "y", *flags], expected)


def test_missing_required_arguments(capsys):
    one_line_error(capsys, ["train", "x.csv"], "--target")
    one_line_error(capsys, [], "required")
    one_line_error(capsys, ["forecast", "run", "--data", "x.csv"], "--steps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_without_cuda(tmp_path, capsys):
    one_line_error(capsys, ["train", good_csv(tmp_path), "--target", "y", "--device", "cuda",
                            "--out", str(tmp_path / "r")],
                   "no CUDA device", "--device cpu")  # fmt: skip


# --- run directories --------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    assert main(["train", good_csv(tmp_path), "--target", "y", *TINY, "--out", str(out)]) == 0
    return out


def test_existing_run_is_never_overwritten(tmp_path, run_dir, capsys):
    before = (run_dir / "weights.safetensors").read_bytes()
    one_line_error(capsys, ["train", good_csv(tmp_path), "--target", "y", *TINY,
                            "--out", str(run_dir)], "already holds a run", "--resume", "--force")  # fmt: skip
    assert (run_dir / "weights.safetensors").read_bytes() == before
    capsys.readouterr()
    assert main(["train", good_csv(tmp_path), "--target", "y", *TINY, "--seed", "5",
                 "--out", str(run_dir), "--force"]) == 0  # fmt: skip
    assert (run_dir / "weights.safetensors").read_bytes() != before


def test_resume_with_other_settings(tmp_path, run_dir, capsys):
    one_line_error(capsys, ["train", good_csv(tmp_path), "--target", "y", "--hidden", "16",
                            "--out", str(run_dir), "--resume"],
                   "differ from the run", "--hidden 16 (the run has 2)")  # fmt: skip
    one_line_error(capsys, ["train", good_csv(tmp_path), "--target", "y", "--out",
                            str(tmp_path / "none"), "--resume"], "no run directory")  # fmt: skip


@pytest.mark.parametrize("command", ["evaluate", "forecast", "inspect"])
def test_missing_or_incomplete_run(tmp_path, run_dir, capsys, command):
    extra = {"evaluate": [], "forecast": ["--data", good_csv(tmp_path), "--steps", "2"],
             "inspect": ["--data", good_csv(tmp_path)]}[command]  # fmt: skip
    one_line_error(capsys, [command, str(tmp_path / "absent"), *extra], "no run directory")
    (run_dir / "weights.safetensors").unlink()
    one_line_error(capsys, [command, str(run_dir), *extra], "not a complete run",
                   "weights.safetensors")  # fmt: skip


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_weights_are_refused(run_dir, capsys, damage):
    p = run_dir / "weights.safetensors"
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 7]
    else:
        data[-3] ^= 0x01
    p.write_bytes(bytes(data))
    one_line_error(capsys, ["evaluate", str(run_dir)], "damaged", "was not loaded")


def test_damaged_config_and_state(tmp_path, run_dir, capsys):
    (run_dir / "state.safetensors").write_bytes(b"\x00" * 10)
    one_line_error(capsys, ["train", good_csv(tmp_path), "--target", "y", "--out", str(run_dir),
                            "--resume"], "training state", "damaged")  # fmt: skip
    (run_dir / "config.json").write_text("{")
    one_line_error(capsys, ["evaluate", str(run_dir)], "not valid JSON")


def test_run_data_gone_asks_for_data(tmp_path, run_dir, capsys):
    Path(json.loads((run_dir / "config.json").read_text())["data"]["path"]).unlink()
    one_line_error(capsys, ["evaluate", str(run_dir)], "is gone", "--data")


def test_forecast_bad_steps_and_short_data(tmp_path, run_dir, capsys):
    one_line_error(capsys, ["forecast", str(run_dir), "--data", good_csv(tmp_path), "--steps", "0"],
                   "--steps must be")  # fmt: skip
    short = csv_file(tmp_path, "t,y\n1,1\n2,2\n", "short.csv")
    one_line_error(capsys, ["forecast", str(run_dir), "--data", short, "--steps", "2"],
                   "at least 3")  # fmt: skip


# --- malformed CSV content, generated --------------------------------------------------------

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        [
            "",
            "NA",
            "nan",
            "inf",
            "-inf",
            "1e309",
            "abc",
            '"',
            '"1,2"',
            " ",
            "1,5",
            "0x10",
            "١٢",
            "1_000",
            "--",
            "None",
            "\t",
        ]
    ),  # fmt: skip
    st.text(max_size=6),
)
ROWS = st.lists(st.lists(CELLS, min_size=0, max_size=4), min_size=0, max_size=30)


@settings(
    max_examples=int(__import__("os").environ.get("HYP_N", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    header=st.sampled_from(["t,y", "y", "y,t", "t;y", "", "t,y,y", "\ufefft,y"]),
    rows=ROWS,
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_malformed_csv_never_gives_a_traceback(header, rows, raw):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "d.csv"
        text = header + "\n" + "\n".join(",".join(r) for r in rows)
        path.write_bytes(raw if raw is not None else text.encode("utf-8", "surrogatepass"))
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["train", str(path), "--target", "y", "--window", "2", "--hidden", "2",
                         "--epochs", "1", "--quiet", "--val-fraction", "0.2",
                         "--test-fraction", "0.2", "--out", str(Path(d) / "run")])  # fmt: skip
        lines = err.getvalue().strip().splitlines()
        assert code in (0, 2)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("lstmbyhand train: error: ")


def test_other_data_without_the_runs_columns_names_them(tmp_path, run_dir, capsys):
    other = csv_file(tmp_path, "t,price\n" + "".join(f"{i},{i}\n" for i in range(40)), "other.csv")
    err = one_line_error(capsys, ["evaluate", str(run_dir), "--data", other],
                         "no column 'y'", "'t', 'price'", "the run was trained on 'y'")  # fmt: skip
    assert "--target" not in err  # evaluate has no such flag
    short = csv_file(tmp_path, "t,y\n" + "".join(f"{i},{i}\n" for i in range(4)), "short.csv")
    one_line_error(capsys, ["evaluate", str(run_dir), "--data", short],
                   "too short", "use more data, or train with a smaller --window")  # fmt: skip
