"""Issue 20 item 4, issue 18 item 4: temporary files never stay behind; a full disk, a read-only
disk or a missing folder is one `UserError` naming the path, and the run resumes once it is fixed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from lstmbyhand.cli import main
from lstmbyhand.errors import UserError
from lstmbyhand.forecast import files
from lstmbyhand.forecast.files import atomic_write, remove_stale_temporaries

pytestmark = pytest.mark.usefixtures("one_thread")


def dead_pid() -> int:
    """The pid of a process that has just exited (not reused this soon)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_stale_temporaries_of_a_dead_process_are_removed_by_the_next_write(tmp_path):
    stale = tmp_path / f".weights.safetensors.tmp-{dead_pid()}"
    stale.write_bytes(b"x" * 1000)
    mine = tmp_path / f".other.tmp-{os.getpid()}"  # a live process's (ours): kept
    mine.write_bytes(b"y")
    user = tmp_path / ".notes.tmp-abc"  # not our pattern: kept
    user.write_bytes(b"z")
    atomic_write(tmp_path / "f.bin", b"data")
    assert not stale.exists() and mine.exists() and user.exists()
    assert remove_stale_temporaries(tmp_path) == []


@pytest.mark.parametrize("when", ["write", "fsync", "replace"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_write_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, when, code):
    p = tmp_path / "f.bin"
    atomic_write(p, b"old")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    target = {"write": "open", "fsync": "fsync", "replace": "replace"}[when]
    if target == "open":
        monkeypatch.setattr("builtins.open", fail)
    else:
        monkeypatch.setattr(files.os, target, fail)
    with pytest.raises(UserError, match=os.strerror(code)) as info:
        atomic_write(p, b"new" * 1000)
    monkeypatch.undo()
    if code == errno.ENOSPC:
        assert "needed 2.9 KiB" in str(info.value) and "free" in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["f.bin"] and p.read_bytes() == b"old"


def test_ctrl_c_inside_a_write_leaves_no_temporary(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "f.bin", b"data")
    assert os.listdir(tmp_path) == []


def test_full_disk_during_training_then_resume(tmp_path, monkeypatch, capsys):
    """ENOSPC injected into epoch 2's state file: one line, exit 2, no temporary; once space is
    back, --resume finishes the run with every epoch once."""
    data = tmp_path / "d.csv"
    data.write_text("t,y\n" + "".join(f"{i},{(i * 7) % 11 + i / 3:.3f}\n" for i in range(40)))
    run = tmp_path / "run"
    argv = ["train", str(data), "--target", "y", "--window", "3", "--hidden", "2", "--epochs",
            "3", "--quiet", "--base", "none", "--patience", "0", "--out", str(run)]  # fmt: skip
    real, states = files.os.fsync, []

    def full(fd):
        if ".state.safetensors.tmp-" in os.readlink(f"/proc/self/fd/{fd}"):
            states.append(fd)
            if len(states) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", full)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "needed" in err[0], err
    assert not [n for n in os.listdir(run) if ".tmp-" in n]
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
