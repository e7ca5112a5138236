"""`lstmbyhand odyssey`: every variant runs and is in the table, the numbers repeat under a seed,
mistakes are one line, outputs it did not write are refused, and each variant is the paper's cell
(its gate traces against the paper's equations, worked out here from the weights)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from helpers import one_line_error

from lstmbyhand.cli import build_parser, main
from lstmbyhand.cli.odyssey import MARKER, PLOT, RESULTS, SETTING_FLAGS
from lstmbyhand.studies.odyssey import VARIANTS, Settings, build_model, make_task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--epochs", "1", "--hidden", "3", "--context", "12", "--horizon", "2", "--stride", "96"]
NAMES = ["V", "NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG"]


def odyssey(out: Path, *flags: str) -> int:
    return main(["odyssey", *TINY, "--out", str(out), *flags])


def test_every_variant_runs_and_has_a_row(tmp_path, capsys):
    assert odyssey(tmp_path / "o", "--seeds", "2") == 0
    out = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.out.splitlines()[2:10]}
    assert list(rows) == NAMES == list(VARIANTS)
    assert rows["V"].split()[-3] == "1.000"  # the ratio column: V to itself
    assert out.err.count("odyssey: seed") == 2 * len(NAMES)  # one progress line a run
    results = json.loads((tmp_path / "o" / RESULTS).read_text())
    summary = {s["variant"]: s for s in results["summary"]}
    assert list(summary) == NAMES and results["seeds"] == [0, 1]
    for name, s in summary.items():
        runs = [r["test_rmse"] for r in results["runs"] if r["variant"] == name]
        assert s["rmse"] == runs and len(runs) == 2 and all(math.isfinite(v) for v in runs)
        assert s["mean"] == pytest.approx(statistics.mean(runs), rel=1e-12)
        assert s["std"] == pytest.approx(statistics.stdev(runs), rel=1e-12)
        assert s["median"] == pytest.approx(statistics.median(runs), rel=1e-12)
        assert s["ratio"] == pytest.approx(s["mean"] / summary["V"]["mean"], rel=1e-12)
        cells = [r["largest_cell"] for r in results["runs"] if r["variant"] == name]
        assert s["largest_cell"] == pytest.approx(statistics.mean(cells), rel=1e-12)
        assert min(cells) > 0
        assert f"{s['mean']:.2f} ± {s['std']:.2f}" in rows[name]
    assert (tmp_path / "o" / PLOT).read_bytes().startswith(PNG_MAGIC)


def test_the_numbers_repeat_under_a_seed(tmp_path, capsys):
    runs = []
    for k in (1, 2):
        assert odyssey(tmp_path / str(k), "--seeds", "2", "--variants", "V,NFG,CIFG", "--json") == 0
        runs.append(json.loads(capsys.readouterr().out)["runs"])
    key = [(r["variant"], r["seed"], r["test_rmse"], r["train_loss"]) for r in runs[0]]
    assert key == [(r["variant"], r["seed"], r["test_rmse"], r["train_loss"]) for r in runs[1]]
    by_seed = {r["seed"]: r["test_rmse"] for r in runs[0] if r["variant"] == "V"}
    assert by_seed[0] != by_seed[1]  # the seed matters: the check above could fail


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--variants", "V,XIG"], "--variants: expected names from V,NIG,"),
        (["--variants", "V,NP,V"], "--variants: expected each name once"),
        (["--seeds", "0"], "--seeds must be a whole number ≥ 1, got 0"),
        (["--epochs", "0"], "--epochs: expected a whole number ≥ 1, got 0"),
        (["--hidden", "-2"], "--hidden: expected a whole number ≥ 1, got -2"),
        (["--lr", "nan"], "--lr: expected a positive number, got nan"),
        (["--context", "3000"], "expected a series longer than context + horizon"),
        (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    ],
)
def test_a_mistake_is_one_line(tmp_path, capsys, flags, expected):
    one_line_error(capsys, ["odyssey", *TINY, "--out", str(tmp_path / "o"), *flags], expected)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_refuses_files_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / RESULTS).write_text("the user's own results\n")
    argv = ["odyssey", *TINY, "--variants", "V", "--seeds", "1", "--out", str(out)]
    one_line_error(capsys, argv, f"--out {out} holds files of another program")
    assert (out / RESULTS).read_text() == "the user's own results\n"
    (out / RESULTS).unlink()
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, [*argv[:-1], str(tmp_path / "file")], "is a file; give a folder")

    assert main(argv) == 0 and main(argv) == 0  # its own files, unchanged: replaced
    (out / PLOT).write_bytes(b"edited by hand")
    one_line_error(capsys, argv, f"holds {PLOT}, which lstmbyhand odyssey did not write")
    assert (out / PLOT).read_bytes() == b"edited by hand"
    (out / MARKER).write_text("{}")
    one_line_error(capsys, argv, f"no valid {MARKER}")


def test_the_help_names_the_study_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["odyssey", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, (name, _, _) in SETTING_FLAGS.items():
        assert f"{flag} {flag[2:].upper()} " in text
        assert f"(default {getattr(Settings(), name)})" in text, flag


def test_the_task_cuts_windows_and_targets_as_documented():
    series = torch.arange(40.0)  # months 0..39; 1 test year = months 28..39
    settings = Settings(context=5, horizon=2, stride=4, test_years=1)
    task = make_task(series, settings)
    z = (series - task.mean) / task.std
    assert task.mean == pytest.approx(13.5) and task.std == pytest.approx(series[:28].std().item())
    # windows start at 0, 4, ..., 20 (the last whose targets end by month 27)
    assert task.train_x.shape == (6, 5, 1) and task.train_y.shape == (6, 5, 2)
    assert torch.equal(task.train_x[2, :, 0], z[8:13])
    assert torch.equal(task.train_y[2, 4], z[13:15])  # step t forecasts t+1, t+2
    # origins 27 .. 37: the context up to τ, the counts τ+1, τ+2 (all in the test year)
    assert task.test_x.shape == (11, 5, 1) and torch.equal(task.test_x[0, :, 0], z[23:28])
    assert torch.equal(task.test_y[0], series[28:30]) and torch.equal(
        task.test_y[-1], series[38:40]
    )
    # naive: the mean of the last 12 months (τ-11 .. τ = τ - 5.5) held for τ+1, τ+2
    assert task.baseline_rmse == pytest.approx(math.sqrt((6.5**2 + 7.5**2) / 2))


def paper_cell(name, x, h, c, W, U, b, p):
    """One step of the paper's variant `name` (Greff et al. 2017, eq. 1-6 and Section III)."""
    z_i, z_f, z_g, z_o = (x @ W.T + h @ U.T + b).chunk(4, dim=1)
    p_i, p_f, p_o = p.chunk(3) if name != "NP" else (0, 0, 0)
    i = torch.ones_like(z_i) if name == "NIG" else torch.sigmoid(z_i + p_i * c)
    f = torch.sigmoid(z_f + p_f * c)
    f = 1 - i if name == "CIFG" else torch.ones_like(f) if name == "NFG" else f
    g = z_g if name == "NIAF" else torch.tanh(z_g)
    c_new = f * c + i * g
    o = torch.ones_like(z_o) if name == "NOG" else torch.sigmoid(z_o + p_o * c_new)
    h_new = o * (c_new if name == "NOAF" else torch.tanh(c_new))
    return h_new, c_new, (i, f, g, o)


@pytest.mark.parametrize("name", NAMES)
def test_each_variant_is_the_papers(name):
    model = build_model(name, Settings(hidden=3), seed=0).double()
    lstm = model.lstm
    params = dict(lstm.named_parameters())
    expected = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
    assert set(params) == expected | (set() if name == "NP" else {"weight_peephole_l0"})
    with torch.no_grad():  # weights away from zero, so that every term shows
        for weight in lstm.parameters():
            weight.uniform_(-1.5, 1.5)
    x = torch.randn(2, 6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    trace = lstm.trace(x)[0][0]  # fields (T, B, H)
    W, U = params["weight_ih_l0"], params["weight_hh_l0"]
    b = params["bias_ih_l0"] + params["bias_hh_l0"]
    p = params.get("weight_peephole_l0", torch.zeros(9, dtype=torch.float64))
    h = c = torch.zeros(2, 3, dtype=torch.float64)
    for t in range(6):
        with torch.no_grad():
            h, c, gates = paper_cell(name, x[:, t], h, c, W, U, b, p)
        recorded = (trace.input_gate, trace.forget_gate, trace.candidate, trace.output_gate)
        for what, ours, paper in zip("ifgo", recorded, gates, strict=True):
            torch.testing.assert_close(ours[t], paper, rtol=1e-12, atol=1e-12, msg=f"{what}, t={t}")
        torch.testing.assert_close(trace.cell[t], c, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(trace.hidden[t], h, rtol=1e-12, atol=1e-12)
    if name == "NFG":
        assert torch.equal(trace.forget_gate, torch.ones_like(trace.forget_gate))
    if name == "NOAF":
        torch.testing.assert_close(trace.hidden, trace.output_gate * trace.cell)
    if name == "CIFG":
        torch.testing.assert_close(trace.forget_gate, 1 - trace.input_gate)
