"""Database input ops: CreateDB and TensorProtosDBInput, as Caffe2's LMDB examples use them.

minidb (Caffe2's own file format, `food101.caffe2.db`) is read as well: CreateDB then holds a
`db.DBReader` and TensorProtosDBInput parses each record's TensorProtos (one output per proto).

    init net:   CreateDB([], "dbreader", db="food101_train_lmdb", db_type="lmdb")
    train net:  TensorProtosDBInput(["dbreader"], ["data", "label"], batch_size=64)

CreateDB puts a reader object (a `food101.data.LMDBReader`) in the workspace. Like Caffe2's
DBReader it walks the keys in order and wraps around at the end; `num_shards` / `shard_id` give
each of several readers every num_shards-th record. TensorProtosDBInput returns what the
records hold, batched: images as stored (uint8 for BYTE, float32 for FLOAT), labels int32, on
the op's device. `batch_size=0` returns one record without a batch dimension (Caffe2's
unbatched mode). Shuffling and augmentation belong to `food101.data` (the LMDB is written
shuffled; augment on the device).
"""
import os

import numpy as np
import torch

from food101.caffe2 import db as dbs
from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator
from food101.caffe2.proto import caffe2_pb2, tensor_to_numpy

SUPPORTED_DB_TYPES = dbs.DB_TYPES


@operator("CreateDB", grad_inputs=())
def create_db(*, db="", db_type="", num_shards=1, shard_id=0):
    from food101.data.reader import LMDBReader
    enforce(bool(db), "CreateDB needs the argument db (the path of the database)")
    enforce(os.path.exists(db), "CreateDB: database %r does not exist" % db)
    kind = (db_type or "").lower()
    if not kind:
        kind = dbs.guess_db_type(db) or ""  # Caffe2 would default to leveldb; the file says what it is
    enforce(kind in SUPPORTED_DB_TYPES,
            "CreateDB: db_type %r is not supported (db %r); supported: %s. Convert other "
            "databases with tools/build_lmdb.py" % (db_type or "<unset>", db, ", ".join(SUPPORTED_DB_TYPES)))
    enforce(num_shards >= 1 and 0 <= shard_id < num_shards,
            "CreateDB: shard_id %d is not in [0, num_shards=%d)" % (shard_id, num_shards))
    if kind != "lmdb":
        return dbs.DBReader(db, kind, num_shards=num_shards, shard_id=shard_id)
    return LMDBReader(db, batch_size=1, shuffle=False, rank=shard_id, world_size=num_shards,
                      num_threads=1, prefetch=2)


@operator("TensorProtosDBInput", grad_inputs=(), context=True)
def tensor_protos_db_input(reader, *, batch_size=0, ctx):
    if isinstance(reader, dbs.DBReader):
        return _records_as_batch(reader, batch_size, ctx)
    enforce(hasattr(reader, "next_batch"),
            "TensorProtosDBInput: input 0 must be a DB reader made by CreateDB, got %s"
            % type(reader).__name__)
    enforce(batch_size >= 0, "TensorProtosDBInput: batch_size must be >= 0, got %d" % batch_size)
    images, labels = reader.next_batch(batch_size or 1)
    data, label = torch.from_numpy(images), torch.from_numpy(labels)
    if batch_size == 0:
        data, label = data[0], label[0]
    if ctx.device.type != "cpu":
        data, label = data.to(ctx.device, non_blocking=True), label.to(ctx.device, non_blocking=True)
    return data, label


def _records_as_batch(reader, batch_size, ctx):
    """The generic path: any number of TensorProtos per record, stacked record by record."""
    columns = None
    for _ in range(batch_size or 1):
        key, value = reader.read()
        protos = caffe2_pb2.TensorProtos()
        try:
            protos.ParseFromString(value)
        except Exception as e:  # noqa: BLE001 - protobuf raises several types
            raise dbs.DBError("TensorProtosDBInput: record %r of %r is not a TensorProtos (%s)"
                              % (key, reader.source, e)) from None
        enforce(len(protos.protos) >= ctx.num_outputs,
                "TensorProtosDBInput: record %r of %r holds %d tensors, the op has %d outputs",
                key, reader.source, len(protos.protos), ctx.num_outputs)
        values = [tensor_to_numpy(p) for p in protos.protos[:ctx.num_outputs]]
        columns = [[v] for v in values] if columns is None else [c + [v] for c, v in zip(columns, values)]
    out = []
    for column in columns:
        array = column[0] if batch_size == 0 else np.stack(column)
        out.append(torch.from_numpy(np.ascontiguousarray(array)).to(ctx.device))
    return tuple(out)
