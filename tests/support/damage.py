"""Damaged copies of LMDBs, as users meet them: cut short, bytes overwritten, NaN records."""
import os
import shutil

import numpy as np


def copy_lmdb(src, dst):
    shutil.copytree(src, dst)
    lock = os.path.join(dst, "lock.mdb")
    if os.path.exists(lock):
        os.remove(lock)
    return dst


def truncated_copy(src, dst, size):
    """`truncate -s SIZE data.mdb` on a copy."""
    copy_lmdb(src, dst)
    os.truncate(os.path.join(dst, "data.mdb"), size)
    return dst


def corrupted_copy(src, dst, offset, length=64, seed=0):
    """`length` random bytes written over data.mdb at `offset` on a copy."""
    copy_lmdb(src, dst)
    path = os.path.join(dst, "data.mdb")
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes())
    return dst


def float_copy(src, dst, poison=(), value=float("nan")):
    """The records of an LMDB re-written as float32 images (mean-free pixel values), with the
    builder's metadata; records at the `poison` positions (key order) get `value` everywhere."""
    import lmdb
    from food101.data.reader import LMDBReader
    from food101.data.records import encode_record
    from food101.data.writer import META_FILE
    os.makedirs(dst)
    poisoned = set(poison)
    keys = []
    with LMDBReader(src, 1, num_threads=0) as reader:
        env = lmdb.open(dst, map_size=1 << 28, subdir=True)
        with env.begin(write=True) as txn:
            for i, (key, image, label) in enumerate(reader.iter_records()):
                image = image.astype(np.float32)
                if i in poisoned:
                    image[:] = value
                    keys.append(key)
                txn.put(key, encode_record(image, label))
        env.close()
    meta = os.path.join(src, META_FILE)
    if os.path.exists(meta):
        shutil.copy(meta, os.path.join(dst, META_FILE))
    return keys
