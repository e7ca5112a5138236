"""The source distribution carries every C++ source and header of the compiled path: a build from the
sdist that lacked one (common.h once) failed to compile and silently fell back to the slow path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "src" / "lstmbyhand" / "nn" / "csrc"


def test_sdist_lists_every_csrc_file(tmp_path):
    """setup.py sdist on a copy of the project (the working tree stays untouched), the extension off
    so that it needs no torch import: the C++ files reach the sdist as package data either way."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "src",
        project / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", ".*"),
    )
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--formats=gztar", "-d", str(tmp_path)],
        cwd=project,
        env=subprocess_env(LSTMBYHAND_BUILD_NATIVE="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("lstmbyhand-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {Path(*Path(n).parts[1:]).as_posix() for n in tar.getnames()}
    expected = {f"src/lstmbyhand/nn/csrc/{p.name}" for p in CSRC.iterdir() if p.is_file()}
    assert {"src/lstmbyhand/nn/csrc/kernels.h", "src/lstmbyhand/nn/csrc/bptt.cpp"} <= expected
    assert expected <= names, f"missing from the sdist: {sorted(expected - names)}"
    assert "setup.py" in names and "pyproject.toml" in names
