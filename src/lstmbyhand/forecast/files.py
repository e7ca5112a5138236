"""Writing files safely: atomic replacement, user outputs that never overwrite an input, clean errors.

    atomic_write(path, data)                  readers see the old file or the whole new one
    write_output("f.csv", data, "--output", protected=[data_file, *run_files])

`atomic_write` writes `.NAME.tmp-PID` next to the target, fsyncs it and renames it over the target.
The temporary file is removed on every exit path (an error, a full disk, Ctrl-C); one left behind
by a killed process (its PID no longer runs) is removed by the next write into that directory.

`write_output` is for paths the user names (--output, --plot):
- `-` writes to stdout;
- a path that is not a regular file (a device such as /dev/stdout, a FIFO) or lies under /dev or
  /proc is written in place, never renamed over;
- symlinks are followed: the file the link points to is replaced, the link stays;
- a path that is (or links to, or is a hard link of) one of the command's inputs, or a run
  directory's own file, is refused, as are a missing folder and a directory.
Errors the user can fix (no space, read-only disk, permission denied, no such folder) become one
`UserError` line naming the path; a full disk also names how much was needed and how much is free.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from lstmbyhand.errors import UserError

STALE = re.compile(r"^\..+\.tmp-(\d+)$")  # `.NAME.tmp-PID`
IN_PLACE_ROOTS = ("/dev/", "/proc/")
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
               errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or an absurd number): leave its file alone
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete `.NAME.tmp-PID` files in `folder` whose process is gone; return what was removed."""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = STALE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                os.unlink(folder / name)
                removed.append(folder / name)
            except OSError:
                pass
    return removed


def write_error(path: Path, err: OSError, size: int) -> Exception:
    """A `UserError` for the mistakes a user can fix; any other OSError is returned unchanged."""
    if err.errno not in USER_ERRNOS:
        return err
    reason = err.strerror or os.strerror(err.errno)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
        except OSError:
            free = 0
        return UserError(
            f"cannot write {path}: {reason} on the disk holding {path.parent} (needed "
            f"{_size(size)}, {_size(free)} free); free some space and run the command again"
        )
    if err.errno == errno.ENOENT and not path.parent.is_dir():
        return UserError(f"cannot write {path}: the folder {path.parent} does not exist; create it")
    return UserError(f"cannot write {path}: {reason}; check the path and its permissions")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # an error, a full disk, Ctrl-C: never leave the temporary
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise write_error(path, err, len(data)) from None
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def same_file(a: Path, b: Path) -> bool:
    """True when a and b name one file: the same path after links, or hard links of one inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(target: str, flag: str, protected: Iterable[Path] = ()) -> None:
    """Refuse an output path that cannot or must not be written, before any work is done."""
    if target == "-":
        return
    p = Path(target)
    real = Path(os.path.realpath(p))
    for other in protected:
        if same_file(p, Path(other)):
            raise UserError(
                f"{flag} {target} is {other}, which this command reads; writing it would destroy "
                f"it: choose another {flag}"
            )
    from lstmbyhand.forecast.rundir import RunDir  # a run's own files are never user outputs

    owner = RunDir(real.parent)
    if real.name in owner.own_files() and owner.is_run():
        raise UserError(
            f"{flag} {target} is a file of the run in {real.parent}; writing it would damage "
            f"the run: choose another {flag}"
        )
    if real.is_dir():
        raise UserError(f"{flag} {target} is a directory; give a file name inside it")
    if not real.parent.is_dir():
        raise UserError(f"{flag} {target}: the folder {p.parent} does not exist; create it first")


def in_place(target: str) -> bool:
    """True for `-` and for what is written in place: not a regular file, or under /dev or /proc."""
    if target == "-" or target.startswith(IN_PLACE_ROOTS):
        return True
    real = os.path.realpath(target)
    try:
        mode = os.stat(real).st_mode
    except OSError:
        mode = stat.S_IFREG
    return not stat.S_ISREG(mode) or real.startswith(IN_PLACE_ROOTS)


def write_output(target: str, data: bytes, flag: str, protected: Iterable[Path] = ()) -> None:
    """Write a user-named output (see the module docstring): stdout, in place, or atomically."""
    check_output(target, flag, protected)
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    if in_place(target):
        try:
            with open(target, "wb") as f:  # a device or a pipe: write in place
                f.write(data)
        except OSError as err:
            raise write_error(Path(target), err, len(data)) from None
        return
    atomic_write(Path(os.path.realpath(target)), data)
