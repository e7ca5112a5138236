"""The forecaster's cell variants from the CLI: `train --cell ... --ablate ... --forget-bias ...
--recurrent-dropout ... --zoneout ...` saved in config.json and rebuilt from it by evaluate,
forecast, inspect, --resume and --refit; refused cells are one line, exit 2, before training."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import one_line_error

import lstmbyhand
from lstmbyhand.cli import main
from lstmbyhand.forecast import rundir
from lstmbyhand.forecast.config import ModelConfig
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.restore import open_run
from lstmbyhand.forecast.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")

# --val-fraction 0 --patience 0: the last epoch is kept (a trained head, not the untrained base);
# --base none --scaling global: the forecast is center + scale · head(LSTM(window')), by hand below
# (the last flag, --quiet, is train's only: backtest has none)
TINY = ["--window", "4", "--hidden", "3", "--batch-size", "8", "--lr", "0.05", "--base", "none",
        "--scaling", "global", "--val-fraction", "0", "--patience", "0", "--quiet"]  # fmt: skip
CELL = ["--cell", "peephole,layer_norm", "--forget-bias", "1", "--recurrent-dropout", "0.2",
        "--zoneout", "0.1"]  # fmt: skip
KEYWORDS = dict(peephole=True, layer_norm=True, forget_bias=1.0, recurrent_dropout=0.2, zoneout=0.1)


def series_csv(folder: Path, n: int = 40) -> str:
    p = folder / "s.csv"
    p.write_text("t,y\n" + "".join(f"{i},{10 + (i * 7) % 11 + i / 3:.3f}\n" for i in range(n)))
    return str(p)


def train(data: str, out: Path, *extra: str) -> None:
    assert main(["train", data, "--target", "y", "--out", str(out), *TINY, *extra]) == 0


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("cell")
    data = series_csv(folder)
    with torch.random.fork_rng(devices=[]):
        train(data, folder / "run", "--epochs", "2", *CELL)
    return data, folder / "run"


def test_the_cell_is_saved_and_rebuilt_by_evaluate_forecast_and_inspect(variant_run, capsys):
    data, run = variant_run
    config = json.loads((run / "config.json").read_text())
    saved = {"cell": ["peephole", "layer_norm"], "ablate": [], "forget_bias": 1.0,
             "recurrent_dropout": 0.2, "zoneout": 0.1}  # fmt: skip
    for part in ("settings", "model"):
        assert {k: config[part][k] for k in saved} == saved
    model = open_run(run)[0]
    names = set(model.state_dict())
    assert {"lstm.weight_peephole_l0", "lstm.ln_weight_ih_l0", "lstm.ln_bias_c_l0"} <= names
    assert model.lstm.options == lstmbyhand.LSTM(1, 3, **KEYWORDS).options

    # the forecast is what an LSTM built here with the same keywords computes from the weights
    capsys.readouterr()
    assert main(["forecast", str(run), "--data", data, "--steps", "1", "--output", "-"]) == 0
    row = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))[0]
    weights = RunDir(run).read_weights()[0]
    lstm = lstmbyhand.LSTM(1, 3, batch_first=True, **KEYWORDS).eval()
    lstm.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("lstm.")})
    scaler = config["scaler"]
    window = torch.tensor([[10 + (i * 7) % 11 + i / 3 for i in range(36, 40)]])  # (1, W)
    x = ((window - scaler["center"]) / scaler["scale"]).float().unsqueeze(-1)  # (1, W, 1)
    with torch.no_grad():
        h = lstm(x)[0][:, -1]  # (1, H)
    head = h @ weights["head.weight"].T + weights["head.bias"]  # (1, 1)
    assert weights["head.weight"].abs().sum() > 0  # a trained head: the cell decides the forecast
    assert float(row["y"]) == pytest.approx(scaler["center"] + scaler["scale"] * float(head), 1e-5)

    assert main(["evaluate", str(run), "--no-baselines"]) == 0
    assert main(["inspect", str(run), "--data", data]) == 0


def test_resume_with_a_variant_continues_bit_for_bit_and_refits(variant_run, tmp_path, capsys):
    data = series_csv(tmp_path)
    train(data, tmp_path / "resumed", "--epochs", "1", *CELL)
    train(data, tmp_path / "resumed", "--epochs", "2", "--resume")  # the cell from config.json
    a, b = RunDir(variant_run[1]), RunDir(tmp_path / "resumed")
    wa, wb = a.read_weights()[0], b.read_weights()[0]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = a.read_state()[0], b.read_state()[0]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # optimizer, RNG (the cell's masks), weights
    argv = ["train", data, "--target", "y", "--out", str(tmp_path / "resumed"), "--resume"]
    one_line_error(capsys, [*argv, "--zoneout", "0.3"], "differ from the run", "--zoneout 0.3")
    train(data, tmp_path / "resumed", "--resume", "--refit")
    refit = RunDir(tmp_path / "resumed").file("refit.safetensors")
    model = open_run(tmp_path / "resumed")[0]  # forecast's model, from refit.safetensors now
    assert refit.is_file() and "lstm.weight_peephole_l0" in model.state_dict()
    assert model.lstm.options == lstmbyhand.LSTM(1, 3, **KEYWORDS).options


@pytest.mark.parametrize(
    "flags, expected",
    [
        (
            ["--cell", "coupled", "--ablate", "forget_gate"],
            "coupled=True with ablate='forget_gate'",
        ),
        (["--cell", "coupled", "--forget-bias", "1"], "forget_bias=1.0 with coupled=True"),
        (["--cell", "peepole"], "unknown variant 'peepole'"),
        (["--ablate", "forget"], "ablate: expected names from"),
        (["--zoneout", "1.5"], "zoneout: expected a probability in [0, 1]"),
        (["--recurrent-dropout", "1"], "recurrent_dropout: expected a probability in [0, 1)"),
        (["--forget-bias", "inf"], "--forget-bias must be a finite number"),
    ],
)
def test_a_refused_cell_is_one_line_before_training(tmp_path, capsys, flags, expected):
    argv = ["train", series_csv(tmp_path), "--target", "y", "--out", str(tmp_path / "r"), *flags]
    one_line_error(capsys, argv, expected)
    assert not (tmp_path / "r").exists()  # refused before the run directory, let alone training


def edit_config(run: Path, edit) -> None:
    """Change config.json's settings and model alike, and sign it again (a careful hand)."""
    config = json.loads((run / "config.json").read_text())
    config.pop("sha256")
    for part in ("settings", "model"):
        edit(config[part])
    (run / "config.json").write_bytes(rundir._signed_json(config))


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"cell": ["peepole"]}, "unknown variant 'peepole'"),
        ({"cell": "peephole"}, "--cell must be names"),
        ({"zoneout": "0.1"}, "--zoneout must be a number"),
        ({"cell": ["coupled", "peephole", "layer_norm"], "ablate": ["input_gate"]},
         "coupled=True with ablate='input_gate'"),
    ],
)  # fmt: skip
def test_a_hand_edited_cell_in_config_json_is_refused(variant_run, tmp_path, capsys, fields,
                                                      expected):  # fmt: skip
    shutil.copytree(variant_run[1], tmp_path / "edited")
    edit_config(tmp_path / "edited", lambda part: part.update(fields))
    one_line_error(capsys, ["evaluate", str(tmp_path / "edited")], expected)


def test_a_run_from_before_the_cell_fields_reads_as_plain(tmp_path):
    data = series_csv(tmp_path)
    train(data, tmp_path / "plain", "--epochs", "1")
    names = ("cell", "ablate", "forget_bias", "recurrent_dropout", "zoneout")
    edit_config(tmp_path / "plain", lambda part: [part.pop(name) for name in names])
    model = open_run(tmp_path / "plain")[0]
    assert model.lstm.options.plain and model.lstm.options == lstmbyhand.LSTM(1, 3).options
    assert main(["evaluate", str(tmp_path / "plain"), "--no-baselines"]) == 0


def test_the_weight_count_includes_the_cells_parameters():
    for cell in ([], ["peephole"], ["layer_norm"], ["peephole", "coupled", "layer_norm"]):
        config = ModelConfig(window=4, hidden=3, layers=2, cell=cell, calendar=["month"])
        model = Forecaster(config)
        assert config.parameters() == sum(p.numel() for p in model.parameters()), cell


def test_backtest_trains_every_fold_with_the_cell(tmp_path, capsys):
    data, out = series_csv(tmp_path, 48), tmp_path / "bt"
    argv = ["backtest", data, "--target", "y", "--folds", "2", "--epochs", "1", "--out", str(out),
            "--no-baselines", *TINY[:-1], "--cell", "coupled", "--ablate", "output_activation"]  # fmt: skip
    assert main(argv) == 0
    for fold in (1, 2):
        model = json.loads((out / f"fold-{fold}" / "config.json").read_text())["model"]
        assert (model["cell"], model["ablate"]) == (["coupled"], ["output_activation"])
    one_line_error(capsys, [*argv[:-4], "--cell", "coupled", "--ablate", "input_gate"],
                   "coupled=True with ablate='input_gate'")  # fmt: skip
