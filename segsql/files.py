"""Writing files so that a reader (or a crash) never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from segsql.errors import ExecutionError


def _current_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


# mkstemp and mkdtemp create files and folders for their owner only; outputs get the usual
# permissions.
FILE_MODE = 0o666 & ~_current_umask()
FOLDER_MODE = 0o777 & ~_current_umask()


def write_atomic(path: Path, content: str | bytes) -> None:
    """Replace `path` whole: the new content is written beside it, then renamed over it."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, content: str | bytes, what: str) -> None:
    """`write_atomic` for a file the user named (a chart, a report): a failure is a runtime
    error naming the file, not a traceback, and leaves no temporary file behind."""
    try:
        write_atomic(path, content)
    except OSError as exc:
        hint = (
            "that path is a folder: name a file inside it"
            if path.is_dir()
            else f"check that {path.parent} exists and is writable"
        )
        raise ExecutionError(
            f"cannot write {what} to {path}: {exc.strerror or exc}", hint=hint
        ) from None
