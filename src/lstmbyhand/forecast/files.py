"""Writing files safely: atomic replacement, user outputs that never overwrite an input, clean errors.

    atomic_write(path, data)                  readers see the old file or the whole new one
    atomic_write_all([(p1, d1), (p2, d2)])    the same for each, one folder fsync for all
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
    atomic_write_all([(Path(path), data)])


def atomic_write_all(items: list[tuple[Path, bytes]]) -> None:
    """Several files of one folder, each as `atomic_write` writes it, with fewer fsyncs: every
    temporary written and fsynced first, then all renamed in the given order, then the folder
    fsynced once (for n files: n + 1 fsyncs, not 2n).

    A crash (the process killed) at any moment leaves a prefix of the renames done: the files
    before are new, the rest old, each whole. After a power loss each file is still old or whole
    new (its data was on disk before its rename), but which renames reached the disk is up to the
    filesystem until the folder's fsync returns: callers must accept any mix of old and new files.
    """
    items = [(Path(p), d) for p, d in items]
    folders = {p.parent for p, _ in items}
    if len(folders) != 1:
        raise ValueError(
            f"atomic_write_all writes into one folder, got {sorted(map(str, folders))}"
        )
    folder = folders.pop()
    remove_stale_temporaries(folder)
    pending = [(p, p.with_name(f".{p.name}.tmp-{os.getpid()}"), d) for p, d in items]
    current = items[0]
    try:
        for path, tmp, data in pending:
            current = (path, data)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        while pending:
            path, tmp, data = pending[0]
            current = (path, data)
            os.replace(tmp, path)
            pending.pop(0)
    except BaseException as err:  # an error, a full disk, Ctrl-C: never leave a temporary
        for _, tmp, _ in pending:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(err, OSError):
            raise write_error(current[0], err, len(current[1])) from None
        raise
    try:  # make the renames themselves durable
        fd = os.open(folder, os.O_RDONLY)
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
