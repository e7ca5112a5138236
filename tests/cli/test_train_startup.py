"""`lstmbyhand train` refuses a data file it cannot read before it imports torch (one line, exit 2;
torch's import alone is seconds): without --resume, and with it (before the run is read)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import subprocess_env

# main(argv), then whether this process imported torch, as JSON on stdout
PROBE = (
    "import json, sys; from lstmbyhand.cli import main; code = main(sys.argv[1:]); "
    "print(json.dumps({'torch': 'torch' in sys.modules})); sys.exit(code)"
)


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, "train", *args], capture_output=True,
                          text=True, env=subprocess_env(), timeout=300)  # fmt: skip


def test_a_missing_or_unreadable_file_is_refused_before_torch_is_imported(tmp_path):
    resume = ["--resume", "--out", str(tmp_path / "run")]  # refused before the run is read
    cases = [(tmp_path / "missing.csv", "no such file", []), (tmp_path, "a directory", resume)]
    for data, message, more in cases:
        done = _train(str(data), "--target", "y", *more)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["torch"] is False
