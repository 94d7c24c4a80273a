"""Checking an LMDB's data file before it is memory-mapped, and naming the file in lmdb errors.

LMDB maps `data.mdb` into memory and trusts it: a file cut short (an interrupted copy, a full
disk) makes the first read past its end kill the process with SIGBUS, with no message at all.
So before mapping, the two meta pages at the start of the file are read with plain file I/O
and the file's size is compared with the pages the newest meta page says are in use:

    page 0, page 1 (meta)   page header (16 bytes) + MDB_meta: magic 0xBEEFC0DE, version,
                            address, mapsize, two MDB_db records (the free-list one carries the
                            page size), last page number, transaction id

(64-bit LMDB layout, as the `lmdb` wheel writes it.) Everything LMDB reports afterwards
(`lmdb.CorruptedError`, page-not-found, ...) becomes one `DatabaseError` naming the file.
"""
import contextlib
import os
import struct

import lmdb

from food101.data.records import RecordError

MAGIC = 0xBEEFC0DE
_PAGE_HEADER = 16
_META = struct.Struct("<IIQQ")            # magic, version, address, mapsize
_DB = struct.Struct("<IHHQQQQQ")          # pad (= page size in the free DB), flags, depth, ...
_TAIL = struct.Struct("<QQ")              # last page number, transaction id
_META_SIZE = _META.size + 2 * _DB.size + _TAIL.size


class DatabaseError(RecordError):
    """The LMDB file itself is missing, damaged or not an LMDB; the message names the file."""


class MissingDatabaseError(DatabaseError, FileNotFoundError):
    """No LMDB at the path given."""


def data_file(path):
    """The data file of an LMDB given as a folder (data.mdb inside) or as the file itself."""
    return os.path.join(path, "data.mdb") if os.path.isdir(path) else path


def _read_meta(raw, offset):
    if len(raw) < offset + _PAGE_HEADER + _META_SIZE:
        return None
    pos = offset + _PAGE_HEADER
    magic, version, _address, _mapsize = _META.unpack_from(raw, pos)
    if magic != MAGIC:
        return None
    free_db = _DB.unpack_from(raw, pos + _META.size)
    main_db = _DB.unpack_from(raw, pos + _META.size + _DB.size)
    last_page, txnid = _TAIL.unpack_from(raw, pos + _META.size + 2 * _DB.size)
    return {"version": version, "page_size": free_db[0], "last_page": last_page, "txnid": txnid,
            "root": main_db[7], "entries": main_db[6]}


def validate(path):
    """Raise DatabaseError unless `path` (an LMDB folder or data file) looks intact enough to map:
    it exists, is not empty, starts with LMDB meta pages and is as long as they say.
    Returns {page_size, last_page, entries, file_size}."""
    if not os.path.exists(path):
        raise MissingDatabaseError("LMDB %s does not exist" % path)
    if os.path.isdir(path) and not os.path.exists(data_file(path)):
        entries = sorted(os.listdir(path))
        raise DatabaseError("%s is not an LMDB: the folder has no data.mdb (%s)" % (
            path, "it is empty" if not entries else "it holds " + ", ".join(entries[:5])
            + (" ..." if len(entries) > 5 else "")))
    target = data_file(path)
    size = os.path.getsize(target)
    if size == 0:
        raise DatabaseError("%s is empty (0 bytes): not an LMDB data file" % target)
    with open(target, "rb") as f:
        head = f.read(2 * 65536)       # enough for both meta pages at the largest page size
    first = _read_meta(head, 0)
    if first is None:
        raise DatabaseError("%s is not an LMDB data file (no LMDB meta page at its start: %d bytes, "
                            "first bytes %r)" % (target, size, head[:16]))
    page_size = first["page_size"]
    if page_size < 512 or page_size & (page_size - 1):
        raise DatabaseError("%s: the LMDB header names page size %d, expected a power of two "
                            ">= 512: the file is damaged" % (target, page_size))
    second = _read_meta(head, page_size)
    metas = [m for m in (first, second) if m is not None]
    meta = max(metas, key=lambda m: m["txnid"])
    needed = (meta["last_page"] + 1) * page_size
    if size < needed:
        raise DatabaseError(
            "%s is truncated: %d bytes, but its LMDB header says %d pages of %d bytes are in use "
            "(%d bytes); the file was cut short (an interrupted copy or a full disk?): copy or "
            "build it again" % (target, size, meta["last_page"] + 1, page_size, needed))
    if meta["root"] != 2 ** 64 - 1 and meta["root"] > meta["last_page"]:
        raise DatabaseError("%s: the LMDB root page %d lies beyond its last page %d: the file is "
                            "damaged" % (target, meta["root"], meta["last_page"]))
    return {"page_size": page_size, "last_page": meta["last_page"], "entries": meta["entries"],
            "file_size": size}


def describe_error(path, error):
    """One line for an lmdb exception met while reading `path`."""
    kind = type(error).__name__
    if isinstance(error, lmdb.CorruptedError):
        what = "the database is corrupted"
    elif isinstance(error, lmdb.PageNotFoundError):
        what = "a page the database refers to is missing (damaged or truncated file)"
    elif isinstance(error, lmdb.InvalidError):
        what = "the file is not an LMDB or has an incompatible format"
    else:
        what = "LMDB failed"
    return "%s: %s (%s: %s)" % (data_file(path), what, kind, str(error).strip())


@contextlib.contextmanager
def errors_named(path):
    """Turn any lmdb.Error raised inside into a DatabaseError naming the file."""
    try:
        yield
    except lmdb.Error as e:
        raise DatabaseError(describe_error(path, e)) from None


def check_value_size(path, key, buf, file_size):
    """A record longer than the whole file comes from a damaged node header; reading it would
    run past the mapping, so it is refused before any byte is touched."""
    if file_size and len(buf) > file_size:
        raise DatabaseError("%s: record %r claims %d bytes, more than the %d-byte file: the "
                            "database is damaged" % (data_file(path), key, len(buf), file_size))
