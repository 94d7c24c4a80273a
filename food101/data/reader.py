"""Reading batches from an LMDB of [image, label] TensorProtos records.

    consumer (training loop)                       reader threads (num_threads)
    ------------------------                       ----------------------------
    next batch  <-- deque of futures (prefetch) <-- read txn: get(key) for each index
        ^                 ^                             decode in place (records.py)
        |                 |                             copy image once into batch[i]
      state         batch plan: (epoch, position) -> indices     [then transform(batch)]
      (epoch, position)     epoch order = permutation(seed, epoch)[rank::world_size]

The keys are listed once when the reader opens. Every epoch has its own order, drawn from
`seed` and the epoch number alone, so `state_dict()` (epoch and position of the next batch) is
enough to resume a run bit for bit: the reader reproduces the very batches it would have given.
`shuffle=False` walks the keys in order (an LMDB from `build_lmdb` is already stored shuffled).

Sharding: rank r of world_size w takes every w-th index of the epoch's order. With shuffling
every rank gets floor(n / w) records, so data-parallel ranks step in lockstep (the few left
over change with each epoch); without shuffling every record is seen once across the ranks.

Two ways to draw batches:
- `for images, labels in reader:` one epoch (the last batch is short unless drop_last), then
  the next loop continues with the next epoch;
- `reader.next_batch()`: an endless stream of full batches crossing epoch boundaries, as
  Caffe2's TensorProtosDBInput delivers them.

Batches are numpy arrays: images (N, C, H, W) of the stored dtype (uint8 for BYTE, float32 for
FLOAT records), labels int32 (N,). Batch arrays are recycled once the caller holds no
reference to them (buffers.py), so steady-state reading allocates nothing. Threads suffice
for prefetching: decoding happened when the database was built, and LMDB reads, numpy copies
and OpenCV release the GIL.

`transform(images, labels, generator)` (e.g. `augment.Augment`) runs in the reader threads on
each batch, with a torch.Generator seeded from (seed, rank, epoch, position): augmentation on the
CPU overlaps with the training step and is reproducible. A transform with
`apply_to_records(views, labels, generator)` (Augment on the CPU) is handed views straight into
the database instead, so no uint8 batch is assembled at all. On a GPU leave the transform out
and augment the uint8 batch on the device.
"""
import collections
import concurrent.futures
import os
import threading

import lmdb
import numpy as np

from food101.data import lmdb_file
from food101.data.buffers import HostBuffers
from food101.data.records import RecordDecoder, RecordError, key_source
from food101.data.writer import read_metadata


_ENVS = {}                  # realpath -> [lmdb.Environment, users]
_ENVS_LOCK = threading.Lock()


def open_env(path):
    """A read-only LMDB environment for `path`, shared by every reader of it in this process
    (LMDB forbids opening one environment twice in a process). Release with `release_env`.
    The data file is checked first (lmdb_file.validate): a truncated file would otherwise kill
    the process with SIGBUS on the first read past its end."""
    real = os.path.realpath(path)
    with _ENVS_LOCK:
        entry = _ENVS.get(real)
        if entry is None:
            lmdb_file.validate(path)
            with lmdb_file.errors_named(path):
                env = lmdb.open(real, subdir=os.path.isdir(real), readonly=True, lock=False,
                                readahead=False, meminit=False, max_readers=512)
            entry = _ENVS[real] = [env, 0]
        entry[1] += 1
        return entry[0]


def release_env(env):
    with _ENVS_LOCK:
        for real, entry in list(_ENVS.items()):
            if entry[0] is env:
                entry[1] -= 1
                if entry[1] == 0:
                    del _ENVS[real]
                    env.close()
                return


class _Planned(collections.namedtuple("_Planned", "indices epoch position last seed")):
    """One batch to load: `epoch`/`position` is the state *after* it; `last` ends an epoch;
    `seed` seeds the transform's generator for this batch."""


class LMDBReader:
    """Batches of (images NCHW, labels int32) from an LMDB of TensorProtos records."""

    def __init__(self, path, batch_size=32, *, shuffle=False, seed=0, rank=0, world_size=1,
                 drop_last=False, prefetch=4, num_threads=1, pin_memory=False, transform=None):
        if not os.path.exists(path):
            raise lmdb_file.MissingDatabaseError("LMDB %s does not exist" % path)
        if not 0 <= rank < world_size:
            raise ValueError("rank %d is not in [0, world_size=%d)" % (rank, world_size))
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1, got %r" % (batch_size,))
        self.path = os.path.abspath(path)
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.rank, self.world_size = int(rank), int(world_size)
        self.prefetch, self.num_threads, self.pin_memory = max(1, int(prefetch)), max(0, int(num_threads)), pin_memory
        self.transform = transform
        self.epoch, self.position = 0, 0
        self._buffers = HostBuffers(keep=self.prefetch + 4)
        self._orders = {}
        self._pool = None
        self._queue = collections.deque()
        self._plan = self._plan_kind = None
        self._decoder = RecordDecoder(self.path)
        self.env = open_env(self.path)
        self._file_size = os.path.getsize(lmdb_file.data_file(self.path))
        try:
            with lmdb_file.errors_named(self.path), self.env.begin() as txn:
                self.keys = list(txn.cursor().iternext(keys=True, values=False))
            if not self.keys:
                raise RecordError("%s: the LMDB holds no records" % self.path)
            self.meta = read_metadata(self.path) if os.path.isdir(self.path) else None
            first, _ = self.read(0)
            self.image_shape, self.image_dtype = first.shape, first.dtype
            shard = self.shard_size()
            if shard == 0:
                raise ValueError("%s: %d records cannot feed %d ranks" % (self.path, len(self.keys), self.world_size))
            if self.drop_last and shard < self.batch_size:
                raise ValueError("%s: a shard holds %d records, fewer than one batch of %d with drop_last"
                                 % (self.path, shard, self.batch_size))
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------------------------- info
    def __len__(self):
        """Batches per epoch (epoch iteration)."""
        n = self.shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_records(self):
        return len(self.keys)

    @property
    def classes(self):
        return self.meta["classes"] if self.meta else None

    @property
    def mean_bgr(self):
        return tuple(self.meta["mean_bgr"]) if self.meta else None

    def shard_size(self):
        n, w = len(self.keys), self.world_size
        return n // w if self.shuffle else len(range(self.rank, n, w))

    def epoch_order(self, epoch):
        """Indices (into self.keys) this rank reads in `epoch`, in order."""
        order = self._orders.get(epoch)
        if order is None:
            n = len(self.keys)
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch]).permutation(n)
                order = perm[self.rank::self.world_size][: n // self.world_size]
            else:
                order = np.arange(self.rank, n, self.world_size)
            if len(self._orders) > 4:
                self._orders.clear()
            self._orders[epoch] = order
        return order

    def source_of(self, key):
        """The source image a record came from (from the builder's key), or None."""
        return key_source(key)

    # -------------------------------------------------------------------------------- records
    def read(self, index):
        """Record `index` (in key order) -> (image ndarray, label int), a copy."""
        key = self.keys[index]
        with lmdb_file.errors_named(self.path), self.env.begin(buffers=True) as txn:
            buf = txn.get(key)
            if buf is None:
                self._decoder.fail(key, "key vanished from the database")
            lmdb_file.check_value_size(self.path, key, buf, self._file_size)
            image, label = self._decoder.decode(key, buf)
            return np.array(image), label

    def iter_records(self):
        """(key bytes, image copy, label) for every record, in key order (a cursor walk)."""
        with lmdb_file.errors_named(self.path), self.env.begin(buffers=True) as txn:
            for key, buf in txn.cursor():
                key = bytes(key)
                lmdb_file.check_value_size(self.path, key, buf, self._file_size)
                image, label = self._decoder.decode(key, buf)
                yield key, np.array(image), label

    def _empty(self, shape, dtype):
        if self.pin_memory:     # page-locked, for asynchronous copies to the GPU
            import torch
            return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=True).numpy()
        return self._buffers.empty(shape, dtype)

    def load_batch(self, indices):
        """Read the records at `indices` into one new (N, C, H, W) array: one copy per image."""
        images = self._empty((len(indices),) + self.image_shape, self.image_dtype)
        labels = np.empty(len(indices), np.int32)
        with lmdb_file.errors_named(self.path), self.env.begin(buffers=True) as txn:
            for j, (key, image, label) in enumerate(self._decoded(txn, indices)):
                if image.shape != self.image_shape or image.dtype != self.image_dtype:
                    self._decoder.fail(key, "image is %s %s but the first record is %s %s; one batch "
                                       "needs one shape and dtype" % (image.dtype, list(image.shape),
                                                                      self.image_dtype, list(self.image_shape)))
                images[j] = image
                labels[j] = label
        return images, labels

    def _decoded(self, txn, indices):
        """(key, image view into the database, label) for each index, inside `txn`."""
        keys, decode = self.keys, self._decoder.decode
        for index in indices:
            key = keys[index]
            buf = txn.get(key)
            if buf is None:
                self._decoder.fail(key, "key vanished from the database")
            lmdb_file.check_value_size(self.path, key, buf, self._file_size)
            image, label = decode(key, buf)
            yield key, image, label

    # -------------------------------------------------------------------------------- planning
    def _planner(self, kind, batch_size, epoch, position):
        """Endless plan of batches starting at (epoch, position)."""
        while True:
            order = self.epoch_order(epoch)
            n = len(order)
            start_epoch, start = epoch, position
            if kind == "epoch":
                usable = n - n % batch_size if self.drop_last else n
                if position >= usable:
                    epoch, position = epoch + 1, 0
                    continue
                end = min(position + batch_size, usable)
                indices = order[position:end]
                last = end >= usable
                epoch, position = (epoch + 1, 0) if last else (epoch, end)
                yield _Planned(indices, epoch, position, last, self._batch_seed(start_epoch, start))
            else:  # "stream" and "indices": full batches, crossing epochs
                parts, need = [], batch_size
                while need:
                    order = self.epoch_order(epoch)
                    take = order[position:position + need]
                    parts.append(take)
                    need -= len(take)
                    position += len(take)
                    if position >= len(order):
                        epoch, position = epoch + 1, 0
                yield _Planned(np.concatenate(parts) if len(parts) > 1 else parts[0], epoch, position,
                               False, self._batch_seed(start_epoch, start))

    def _batch_seed(self, epoch, position):
        """Seed of the transform's generator for the batch starting at (epoch, position): the
        same batch gets the same augmentation whichever thread makes it, and after a resume."""
        return int(np.random.SeedSequence([self.seed, self.rank, epoch, position]).generate_state(1)[0])

    def _produce(self, planned):
        if self.transform is None:
            return self.load_batch(planned.indices)
        import torch
        generator = torch.Generator().manual_seed(planned.seed)
        if hasattr(self.transform, "apply_to_records") and not self.pin_memory:
            result = self._transform_records(planned.indices, generator)
            if result is not NotImplemented:
                return result
            generator = torch.Generator().manual_seed(planned.seed)
        images, labels = self.load_batch(planned.indices)
        return self.transform(images, labels, generator)

    def _transform_records(self, indices, generator):
        """Hand the transform views into the database instead of a copied uint8 batch."""
        views, labels = [], np.empty(len(indices), np.int32)
        with lmdb_file.errors_named(self.path), self.env.begin(buffers=True) as txn:
            for j, (_key, image, label) in enumerate(self._decoded(txn, indices)):
                labels[j] = label
                if image.shape != self.image_shape or image.dtype != np.uint8:
                    return NotImplemented       # the batch path reports it
                views.append(image)
            return self.transform.apply_to_records(views, labels, generator)

    def _start(self, kind, batch_size):
        if self._plan_kind == (kind, batch_size):
            return
        self._drop_prefetched()
        self._plan = self._planner(kind, batch_size, self.epoch, self.position)
        self._plan_kind = (kind, batch_size)
        if self.num_threads and self._pool is None and kind != "indices":
            self._pool = concurrent.futures.ThreadPoolExecutor(self.num_threads, thread_name_prefix="lmdb-reader")

    def _drop_prefetched(self):
        for future, _ in self._queue:
            if hasattr(future, "cancel"):
                future.cancel()
        self._queue.clear()
        self._plan = self._plan_kind = None

    def _fill(self):
        while len(self._queue) < self.prefetch:
            planned = next(self._plan)
            self._queue.append((self._pool.submit(self._produce, planned), planned))

    def _take(self):
        if self._pool is None:
            planned = next(self._plan)
            batch = self._produce(planned)
        else:
            self._fill()
            future, planned = self._queue.popleft()
            self._fill()    # keep `prefetch` batches in flight while the caller uses this one
            batch = future.result()
        self._advance(planned)
        return batch, planned

    def _advance(self, planned):
        self.epoch, self.position = planned.epoch, planned.position
        # the records of the batch just handed out, so a divergence report can name them
        self.last_keys = [self.keys[i] for i in planned.indices]

    # -------------------------------------------------------------------------------- batches
    def __iter__(self):
        """One epoch of batches from the current position."""
        self._start("epoch", self.batch_size)
        while True:
            batch, planned = self._take()
            yield batch
            if planned.last:
                return

    def next_batch(self, batch_size=None):
        """The next full batch of the endless stream (crosses epoch boundaries)."""
        self._start("stream", int(batch_size or self.batch_size))
        return self._take()[0]

    def next_indices(self, batch_size=None):
        """What `next_batch()` would read next, as indices into `self.keys`, with the state
        (epoch, position, last_keys) advanced just as it would be, but no record read: the one
        plan of the stream for callers that hold the records elsewhere (resident.py)."""
        self._start("indices", int(batch_size or self.batch_size))
        planned = next(self._plan)
        self._advance(planned)
        return planned.indices

    # -------------------------------------------------------------------------------- resume
    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "shuffle": self.shuffle, "rank": self.rank, "world_size": self.world_size,
                "num_records": len(self.keys), "path": self.path}

    def load_state_dict(self, state):
        for name in ("seed", "shuffle", "rank", "world_size", "num_records"):
            if name in state and state[name] != self.state_dict()[name]:
                raise ValueError("reader state is for %s=%r but this reader of %s has %r"
                                 % (name, state[name], self.path, self.state_dict()[name]))
        self._drop_prefetched()
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def close(self):
        if not hasattr(self, "_queue"):   # __init__ failed before any resource was taken
            return
        self._drop_prefetched()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.env is not None:
            release_env(self.env)
            self.env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "LMDBReader(%r, %d records, %s %s, batch %d, shard %d/%d%s)" % (
            self.path, len(self.keys), self.image_dtype, list(self.image_shape), self.batch_size,
            self.rank, self.world_size, ", shuffled seed %d" % self.seed if self.shuffle else "")
