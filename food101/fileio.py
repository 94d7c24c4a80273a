"""Writing files so that a crash or a full disk never leaves a half-written one behind.

    with atomic_write("run/metrics.json", "w") as f:     <folder>/.<name>.<pid>.<random>.tmp
        json.dump(record, f)                              ──flush, fsync──► os.replace ──► <name>

The temporary file is in the destination's folder (os.replace is atomic only within one file
system), is created with the permissions a plain open() gives (0666 masked by the umask, not
mkstemp's 0600), and is removed if the block raises. The destination's folder must exist.
This module imports nothing from food101, so every layer (caffe2 included) can use it.
"""
import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Open a temporary file for writing (`mode` "w" or "wb"); on a clean exit it is flushed,
    fsync'ed and renamed onto `path`; on an exception it is deleted and `path` is untouched."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write: mode must be 'w' or 'wb', got %r" % (mode,))
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, ".%s.%d.%s.tmp" % (name, os.getpid(), secrets.token_hex(4)))
    # O_EXCL: a fresh file of our own; mode 0o666 lets the umask decide, as open() does
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, encoding=encoding if mode == "w" else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text, encoding="utf-8"):
    """`text` into `path`, atomically."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return path


def write_bytes(path, data):
    """`data` into `path`, atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return path
