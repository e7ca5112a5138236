"""Start-up costs a user feels, as ratios to a bare interpreter, medians of alternating runs.

    python benchmarks/startup.py [--repeats 7]

Rows: `lstmbyhand --help` against `python -c pass` (the CLI's parser imports no torch), and the
README's seed example against `import torch, lstmbyhand` alone (what the example costs beyond its
imports: the compiled Adam loop, without torch.optim's import of torch._dynamo).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def compare(ours: list[str], base: list[str], repeats: int) -> tuple[float, float]:
    """Median seconds of `ours` and of `base`, run alternately."""
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours))
        b.append(timed(base))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    py = sys.executable
    rows = {
        "lstmbyhand --help vs python -c pass": (
            [py, "-m", "lstmbyhand", "--help"],
            [py, "-c", "pass"],
        ),
        "README example vs import torch, lstmbyhand": (
            [py, "-c", readme_example()],
            [py, "-c", "import torch, lstmbyhand; lstmbyhand.LSTMbyHand"],
        ),
    }
    print("| what | ours (s) | reference (s) | difference (s) |")
    print("|---|---|---|---|")
    for name, (ours, base) in rows.items():
        t_ours, t_base = compare(ours, base, repeats)
        print(f"| {name} | {t_ours:.3f} | {t_base:.3f} | {t_ours - t_base:.3f} |", flush=True)


if __name__ == "__main__":
    main()
