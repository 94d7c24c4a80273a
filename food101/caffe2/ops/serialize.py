"""Save, Load and Checkpoint: blobs to and from a DB (minidb or lmdb), as Caffe2 stores models.

    Save(["conv1_w", "conv1_b"], [], db="model.minidb", db_type="minidb", absolute_path=1)
    Load([], ["conv1_w", "conv1_b"], db="model.minidb", db_type="minidb", absolute_path=1)
    Load([], [], db="model.minidb", db_type="minidb", load_all=1)      # every blob in the DB
    Checkpoint(["iter", "conv1_w"], [], db="ckpt_%d.minidb", db_type="minidb", every=100)

Records are Caffe2's (`blob_serialization`), so files go both ways between this runtime and
real Caffe2. Paths: without `absolute_path` Caffe2 puts the workspace's root folder (".") and a
"/" in front of `db`. Load's `keep_device=0` (the default) puts tensors on the op's device;
`keep_device=1` on the device the DB recorded. `strip_prefix` is removed from stored names
before `add_prefix` is put in front; `source_blob_names` reads other names into the outputs.
"""
import os

import torch

from food101.caffe2 import db as dbs
from food101.caffe2.blob_serialization import (
    DEFAULT_CHUNK_SIZE, BlobAssembler, blob_name_of_key, serialize_blob)
from food101.caffe2.errors import Caffe2Error, MissingBlobError, enforce
from food101.caffe2.executor import resolve_device
from food101.caffe2.ops.registry import operator


def _db_path(ctx, db, absolute_path):
    if absolute_path:
        return db
    root = getattr(ctx.workspace, "root_folder", ".") or "."
    return root + "/" + db   # Caffe2 joins with a slash even when `db` is absolute


def _check_db_type(op, db_type, db):
    enforce(bool(db_type), "%s needs the argument db_type (%s) for db %r",
            op, " or ".join(repr(t) for t in dbs.DB_TYPES), db)


def save_blobs(workspace, names, path, db_type, chunk_size=DEFAULT_CHUNK_SIZE, stored_names=None):
    """Serialize `names` from `workspace` into a new DB at `path`; the DB appears complete or
    not at all (minidb) or is overwritten (lmdb)."""
    stored_names = list(stored_names or names)
    records = []
    for name, stored in zip(names, stored_names):
        if name not in workspace.blobs:
            raise MissingBlobError("Save: blob %r does not exist in the workspace" % name)
        records.extend(serialize_blob(stored, workspace.blobs[name], chunk_size))
    folder = os.path.dirname(os.path.abspath(path))
    enforce(os.path.isdir(folder), "Save: cannot write %s db %r: folder %r does not exist",
            db_type, path, folder)
    db = dbs.create_db(db_type, path, dbs.NEW)
    try:
        txn = db.new_transaction()
        for key, value in records:
            txn.put(key, value)
        txn.commit()
    except BaseException:
        if hasattr(db, "abort"):
            db.abort()
        raise
    db.close()


@operator("Save", grad_inputs=(), context=True)
def save(*blobs, absolute_path=0, strip_prefix="", blob_name_overrides=(), db="", db_type="",
         chunk_size=-1, ctx):
    names = list(ctx.op.input)
    enforce(bool(db), "Save needs the argument db (where to write)")
    _check_db_type("Save", db_type, db)
    stored = list(blob_name_overrides) or [
        n[len(strip_prefix):] if strip_prefix and n.startswith(strip_prefix) else n for n in names]
    enforce(len(stored) == len(names), "Save: blob_name_overrides has %d names for %d inputs",
            len(stored), len(names))
    enforce(len(set(stored)) == len(stored), "Save: two inputs would be stored under one name: %s",
            stored)
    save_blobs(ctx.workspace, names, _db_path(ctx, db, absolute_path), db_type,
               DEFAULT_CHUNK_SIZE if chunk_size < 0 else chunk_size, stored)


@operator("Checkpoint", grad_inputs=(), context=True, aliases=("Snapshot",))  # Snapshot: deprecated name
def checkpoint(iteration, *blobs, db="", db_type="", every=1, absolute_path=0, ctx):
    enforce(every >= 1, "Checkpoint: every must be >= 1, got %d", every)
    enforce(bool(db), "Checkpoint needs the argument db (a pattern with %%d for the iteration)")
    _check_db_type("Checkpoint", db_type, db)
    it = int(torch.as_tensor(iteration).reshape(-1)[0])
    if it % every:
        return
    try:
        path = db % it
    except (TypeError, ValueError):
        path = db   # Caffe2 formats with the pattern; a pattern without %d is one fixed file
    names = list(ctx.op.input)
    save_blobs(ctx.workspace, names, _db_path(ctx, path, absolute_path), db_type)


def _cursors(readers, paths, db_type):
    for reader in readers:
        if isinstance(reader, dbs.DBReader):
            # From the first record: the predictor exporter's DB is read by two Loads in turn.
            cursor = reader.cursor()
            cursor.seek_to_first()
            yield reader.source, cursor
        elif hasattr(reader, "env"):   # CreateDB's LMDB batch reader: its environment, afresh
            yield reader.path, dbs.LMDBCursor(reader.env)
        else:
            raise Caffe2Error("Load: input must be a DB reader made by CreateDB, got %s"
                              % type(reader).__name__)
    for path in paths:
        enforce(os.path.exists(path), "Load: %s db %r does not exist", db_type, path)
        db = dbs.create_db(db_type, path, dbs.READ)
        try:
            yield path, db.new_cursor()
        finally:
            db.close()


@operator("Load", grad_inputs=(), context=True)
def load(*readers, absolute_path=0, add_prefix="", strip_prefix="", db="", db_type="",
         keep_device=0, load_all=0, allow_incomplete=0, source_blob_names=(), ctx):
    outputs = list(ctx.op.output)
    # `dbs` is read from the OperatorDef: a keyword argument of that name would shadow the module
    db_list = [a for a in ctx.op.arg if a.name == "dbs"]
    paths = [s.decode() for s in db_list[0].strings] if db_list else ([db] if db else [])
    enforce(bool(readers) != bool(paths),
            "Load reads either from DB reader inputs or from db/dbs arguments (got %d inputs, "
            "dbs %s)", len(readers), paths)
    if paths:
        _check_db_type("Load", db_type, paths[0])
        paths = [_db_path(ctx, p, absolute_path) for p in paths]
    if source_blob_names:
        enforce(len(source_blob_names) == len(outputs),
                "Load: source_blob_names has %d names for %d outputs",
                len(source_blob_names), len(outputs))
        wanted = dict(zip(source_blob_names, outputs))
    else:
        enforce(not (load_all and outputs), "Load: with load_all=1 the op has no outputs")
        wanted = {n: n for n in outputs}
    loaded, sources = {}, []
    for source, cursor in _cursors(readers, paths, db_type):
        sources.append(source)
        assembler = BlobAssembler(source)
        while cursor.valid():
            name = blob_name_of_key(cursor.key())
            if strip_prefix and name.startswith(strip_prefix):
                name = name[len(strip_prefix):]
            name = add_prefix + name
            target = name if load_all else wanted.get(name)
            if target is not None:
                enforce(target not in loaded, "Load: blob %r is in more than one db", target)
                assembler.add(cursor.key(), cursor.value(), name=target)
            cursor.next()
        loaded.update(assembler.finish())
    missing = [n for n in wanted.values() if n not in loaded]
    enforce(allow_incomplete or not missing,
            "Load: expected to load %d blobs, %d are not in %s: %s",
            len(wanted), len(missing), ", ".join(repr(s) for s in sources), missing)
    blobs = ctx.workspace.blobs
    for name, (value, device_detail) in loaded.items():
        if device_detail is not None and not isinstance(value, bytes):
            device = resolve_device(device_detail, "Load (blob %r)" % name) if keep_device else ctx.device
            value = torch.from_numpy(value).to(device) if value.dtype != object else value
        blobs[name] = value
    for name in missing:   # allow_incomplete: Caffe2 leaves an empty tensor behind
        blobs.setdefault(name, torch.empty(0, device=ctx.device))
    return tuple(blobs[n] for n in outputs)


@operator("DBExists", grad_inputs=(), context=True)
def db_exists(*, absolute_path=0, db_name="", db_type="", ctx):
    """A bool scalar: does the DB (file or LMDB folder) exist?"""
    path = _db_path(ctx, db_name, absolute_path)
    return torch.tensor(os.path.exists(path), dtype=torch.bool)
