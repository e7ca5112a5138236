"""`lstmbyhand demo`: trains both formulations, prints the table, writes both plots."""

from pathlib import Path

from lstmbyhand.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_prints_predictions_and_writes_plots(tmp_path: Path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "3000", "--lr", "0.01"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "one step of 4 features" in lines[0] and "four days of 1 feature" in lines[0]
    a_row, b_row = lines[2].split(), lines[3].split()
    assert a_row[:2] == ["A", "0.000"] and b_row[:2] == ["B", "1.000"]
    one_step_b, four_days_b = float(b_row[2]), float(b_row[3])
    assert one_step_b < 0.7616  # tanh(1): one step can never reach 1
    assert four_days_b > one_step_b
    for name in ("loss.png", "gates.png"):
        data = (tmp_path / "demo" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
