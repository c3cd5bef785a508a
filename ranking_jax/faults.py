"""The last line of a run that fails on its environment: disk full, a path it cannot write, a checkpoint error.

A failed asynchronous save is reported many times over by orbax's background threads and asyncio (hundreds of
lines, more at interpreter shutdown). :func:`summarize` turns the exception into one line that says what failed,
where, what is kept and how to recover; :func:`exit_with` prints the traceback, then that line, and leaves without
the shutdown noise, so the line is the last one printed.
"""

from __future__ import annotations

import errno
import os
import pathlib
import re
import shutil
import sys
import traceback
from typing import Iterator, Optional

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|os_error_code='(?:28|122)'")
_CHECKPOINT_PY = str(pathlib.Path(__file__).with_name("checkpoint.py"))
_QUOTED_PATH = re.compile(r'(?:Failed writing|Failed to open|local file):? "([^"]+)"')


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _frames(exc: BaseException) -> list:
    """The frames of ``exc``'s traceback, outermost first."""
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _path(exc: BaseException) -> Optional[str]:
    """The file ``exc`` names, or else the one the innermost frames were writing (a bare ``OSError`` from
    ``file.write`` names none): a path-like local, or an open file's name."""
    if isinstance(exc, OSError) and exc.filename:
        return str(exc.filename)
    match = _QUOTED_PATH.search(str(exc))
    if match:
        return match.group(1)
    for frame in reversed(_frames(exc)[-8:]):
        for name in ("path", "filename", "fname", "fp", "f", "self"):
            value = frame.f_locals.get(name)
            value = getattr(value, "name", None) if hasattr(value, "write") else value
            if isinstance(value, os.PathLike) or (isinstance(value, str) and os.sep in value):
                return os.fspath(value)
    return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _free(path: pathlib.Path) -> str:
    """``'F free of T'`` on the file system holding ``path`` (its nearest existing parent)."""
    for folder in (path, *path.parents):
        if folder.exists():
            usage = shutil.disk_usage(folder)
            return f"{_size(usage.free)} free of {_size(usage.total)}"
    return "free space unknown"


def last_checkpoint(workdir: pathlib.Path) -> str:
    """What a rerun resumes from: the newest finalized step under ``workdir/checkpoints`` (a step orbax was still
    writing has a ``.orbax-checkpoint-tmp`` suffix and is removed by the next start)."""
    folder = workdir / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return f"the last complete checkpoint is step {max(steps)} in {folder}" if steps else "no checkpoint was complete"


def _from_orbax(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside orbax."""
    return any(f"{os.sep}orbax{os.sep}" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


def summarize(exc: BaseException, workdir: pathlib.Path) -> Optional[str]:
    """One line for a fault of the environment (disk full, an unwritable path, a checkpoint that orbax could not
    save or restore); None for anything else, which keeps its traceback."""
    chain = list(_chain(exc))
    kept = last_checkpoint(workdir)
    for e in chain:
        if (isinstance(e, OSError) and e.errno in _DISK_FULL) or _DISK_FULL_TEXT.search(str(e)):
            where = next(filter(None, map(_path, [e, *chain])), None) or str(workdir)
            return (f"error: disk full writing {where} ({_free(pathlib.Path(where))} on its file system); {kept}; "
                    "free space and rerun the same command to resume")
    for e in chain:
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            return (f"error: cannot write {_path(e) or workdir} ({e.strerror}); {kept}; fix the permissions and "
                    "rerun the same command to resume")
    if any(_from_orbax(e) for e in chain):
        root = chain[-1]
        cause = f"{type(root).__name__}: {(str(root).strip().splitlines() or [''])[0]}"
        restore = next((f for e in chain for f in _frames(e) if f.f_code.co_name == "restore"
                        and f.f_code.co_filename == _CHECKPOINT_PY), None)
        if restore is not None:
            folder = restore.f_locals["self"].directory / str(restore.f_locals.get("step"))
            return (f"error: restoring the checkpoint {folder} failed ({cause}); move that folder away to resume "
                    "from the step before, or start in another --workdir")
        return f"error: saving a checkpoint failed ({cause}); {kept}; rerun the same command to resume from it"
    return None


def exit_with(summary: str, code: int = 1) -> None:
    """Prints the current exception's traceback, then ``summary`` as the last line, and exits at once: the
    interpreter's shutdown would print orbax's and asyncio's unfinished futures after it."""
    traceback.print_exc()
    print(summary, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
