"""Caffe2's key/value databases: `minidb` (Caffe2's own file format) and `lmdb`.

The same small interface as Caffe2's C++ `caffe2::db` (what `core.C.create_db` exposes):

    db = create_db("minidb", "model.minidb", WRITE)     # or "lmdb", a folder
    txn = db.new_transaction(); txn.put(b"key", b"value"); txn.commit(); db.close()
    cursor = create_db("minidb", "model.minidb", READ).new_cursor()
    while cursor.valid(): cursor.key(), cursor.value(); cursor.next()

minidb, byte for byte as Caffe2 writes it (caffe2/db/... MiniDB): a flat sequence of records

    int32 key_length | int32 value_length | key bytes | value bytes      (little endian)

with no header and no index, in the order they were put. Writing goes through
`food101.fileio.atomic_write`: the file replaces the destination when the DB is closed, so an
interrupted Save never leaves a half-written model (Caffe2 wrote in place). A truncated or foreign file is an error naming the
file and the byte offset.

`DBReader` is what `CreateDB` puts in the workspace: a cursor over one DB that walks the records
in order and wraps around at the end (Caffe2's DBReader), with `num_shards`/`shard_id` taking
every num_shards-th record.
"""
import contextlib
import os
import shutil
import struct

from food101.caffe2.errors import Caffe2Error
from food101.fileio import atomic_write

READ, WRITE, NEW = "r", "w", "n"    # caffe2::db::Mode
DB_TYPES = ("minidb", "lmdb")
_HEADER = struct.Struct("<ii")
_LMDB_MAP_SIZE = 1 << 40            # as Caffe2's LMDB wrapper: address space, not disk


class DBError(Caffe2Error):
    pass


def guess_db_type(path):
    """'lmdb' for an LMDB folder or file, 'minidb' for any other existing file, else None."""
    if os.path.isdir(path):
        return "lmdb" if os.path.exists(os.path.join(path, "data.mdb")) else None
    if os.path.isfile(path):
        with open(path, "rb") as fh:
            head = fh.read(8)
        return "minidb" if len(head) == 8 or not head else None
    return None


def create_db(db_type, source, mode):
    """Open `source` as a `db_type` database in `mode` (READ, WRITE or NEW)."""
    kind = (db_type or "").lower()
    if kind not in DB_TYPES:
        raise DBError("db_type %r is not supported (db %r); supported: %s"
                      % (db_type, source, ", ".join(DB_TYPES)))
    mode = {"read": READ, "write": WRITE, "new": NEW}.get(mode, mode)
    if mode not in (READ, WRITE, NEW):
        raise DBError("db %r: mode %r is not one of 'r', 'w', 'n'" % (source, mode))
    if mode == READ and not os.path.exists(source):
        raise DBError("%s database %r does not exist" % (kind, source))
    return (MiniDB if kind == "minidb" else LMDB)(os.fspath(source), mode)


# ------------------------------------------------------------------------------ minidb
class MiniDB:
    db_type = "minidb"

    def __init__(self, path, mode):
        self.path, self.mode = path, mode
        self._out = self._writing = None
        if mode != READ:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise DBError("minidb %r cannot be written: folder %r does not exist" % (path, folder))
            self._writing = contextlib.ExitStack()
            self._out = self._writing.enter_context(atomic_write(path, "wb"))

    def new_cursor(self):
        if self.mode != READ:
            raise DBError("minidb %r is open for writing; open it with mode 'r' to read" % self.path)
        return MiniDBCursor(self.path)

    def new_transaction(self):
        if self._out is None:
            raise DBError("minidb %r is open for reading (or closed); open it with mode 'w' or "
                          "'n' to write" % self.path)
        return MiniDBTransaction(self)

    def _put(self, key, value):
        key, value = _as_bytes(key), _as_bytes(value)
        self._out.write(_HEADER.pack(len(key), len(value)))
        self._out.write(key)
        self._out.write(value)

    def close(self):
        """Finish the file: it replaces `path` now (fileio.atomic_write)."""
        if self._writing is not None:
            writing, self._writing, self._out = self._writing, None, None
            writing.close()

    def __del__(self):
        # Caffe2 tutorials write a DB and just `del db`: what was put must reach the file
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def abort(self):
        """Drop what was written (the destination stays as it was)."""
        if self._writing is not None:
            writing, self._writing, self._out = self._writing, None, None
            writing.__exit__(DBError, DBError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        self.abort() if exc_type else self.close()


class MiniDBTransaction:
    def __init__(self, db):
        self.db = db

    def put(self, key, value):
        if self.db._out is None:
            raise DBError("minidb %r is closed; cannot put %r" % (self.db.path, key))
        self.db._put(key, value)

    def commit(self):
        if self.db._out is not None:
            self.db._out.flush()


class MiniDBCursor:
    """Reads the whole file once (models are small next to memory) and indexes its records."""

    def __init__(self, path):
        self.path = path
        if os.path.isdir(path):
            raise DBError("minidb %r is a folder (an LMDB? then db_type='lmdb'); a minidb is one "
                          "file" % path)
        with open(path, "rb") as fh:
            data = fh.read()
        self._records = []
        pos = 0
        while pos < len(data):
            if pos + _HEADER.size > len(data):
                raise DBError("minidb %r: truncated record header at byte %d (file has %d bytes)"
                              % (path, pos, len(data)))
            key_len, value_len = _HEADER.unpack_from(data, pos)
            start = pos + _HEADER.size
            end = start + key_len + value_len
            if key_len < 0 or value_len < 0 or end > len(data):
                raise DBError("minidb %r: record at byte %d claims a %d-byte key and a %d-byte "
                              "value but the file ends at byte %d (truncated, or not a minidb)"
                              % (path, pos, key_len, value_len, len(data)))
            self._records.append((data[start:start + key_len], data[start + key_len:end]))
            pos = end
        self._index = 0

    def seek_to_first(self):
        self._index = 0

    def seek(self, key):
        key = _as_bytes(key)
        self._index = next((i for i, (k, _) in enumerate(self._records) if k == key),
                           len(self._records))

    def supports_seek(self):
        return True

    def next(self):
        self._index += 1

    def valid(self):
        return self._index < len(self._records)

    def key(self):
        return self._records[self._index][0]

    def value(self):
        return self._records[self._index][1]

    def __len__(self):
        return len(self._records)


# ------------------------------------------------------------------------------ lmdb
class LMDB:
    db_type = "lmdb"

    def __init__(self, path, mode):
        import lmdb  # an optional dependency of the caffe2 package: minidb needs nothing
        self.path, self.mode = path, mode
        if mode == NEW and os.path.exists(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        if mode != READ:
            os.makedirs(path, exist_ok=True)
        try:
            self.env = lmdb.open(path, map_size=_LMDB_MAP_SIZE, readonly=mode == READ,
                                 lock=mode != READ, subdir=os.path.isdir(path) or mode != READ,
                                 readahead=False)
        except lmdb.Error as e:
            raise DBError("lmdb %r cannot be opened: %s" % (path, e)) from None

    def new_cursor(self):
        return LMDBCursor(self.env)

    def new_transaction(self):
        if self.mode == READ:
            raise DBError("lmdb %r is open for reading; open it with mode 'w' or 'n' to write"
                          % self.path)
        return LMDBTransaction(self.env)

    def close(self):
        if self.env is not None:
            self.env.close()
            self.env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LMDBTransaction:
    """Puts are committed by commit() and when the transaction is dropped (`del txn`), as
    Caffe2's LMDBTransaction does in its destructor."""

    def __init__(self, env):
        self._env = env
        self._txn = env.begin(write=True)

    def put(self, key, value):
        self._txn.put(_as_bytes(key), _as_bytes(value))

    def commit(self):
        self._txn.commit()
        self._txn = self._env.begin(write=True)

    def __del__(self):
        try:
            self._txn.commit()
        except Exception:  # noqa: BLE001 - env already closed
            pass


class LMDBCursor:
    """Takes the records in one read transaction of `env` (an LMDB environment may be open only
    once per process: a reader that holds one lends it here)."""

    def __init__(self, env):
        with env.begin() as txn:
            self._records = list(txn.cursor().iternext())
        self._index = 0

    seek_to_first = MiniDBCursor.seek_to_first
    seek = MiniDBCursor.seek
    supports_seek = MiniDBCursor.supports_seek
    next = MiniDBCursor.next
    valid = MiniDBCursor.valid
    key = MiniDBCursor.key
    value = MiniDBCursor.value
    __len__ = MiniDBCursor.__len__


def _as_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# ------------------------------------------------------------------------------ reader
class DBReader:
    """A DB opened for reading, as CreateDB leaves it in the workspace (Caffe2's DBReader)."""

    def __init__(self, source, db_type, num_shards=1, shard_id=0, cursor=None):
        if not 0 <= shard_id < num_shards:
            raise DBError("CreateDB: shard_id %d is not in [0, num_shards=%d)" % (shard_id, num_shards))
        self.source, self.db_type = source, db_type
        self.num_shards, self.shard_id = num_shards, shard_id
        if cursor is None:
            db = create_db(db_type, source, READ)
            try:
                cursor = db.new_cursor()
            finally:
                db.close()
        self._cursor = cursor
        if not self._cursor.valid():
            raise DBError("%s database %r holds no records" % (db_type, source))
        self._skip(shard_id)

    def cursor(self):
        """The live cursor: Load reads from where it stands to the end."""
        return self._cursor

    def _skip(self, count):
        for _ in range(count):
            self._cursor.next()
            if not self._cursor.valid():
                self._cursor.seek_to_first()

    def read(self):
        """The next (key, value), wrapping around at the end."""
        record = self._cursor.key(), self._cursor.value()
        self._skip(self.num_shards)
        return record

    def __repr__(self):
        return "DBReader(%r, db_type=%r)" % (self.source, self.db_type)
