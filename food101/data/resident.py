"""The whole uint8 training set held in device memory: batches cut on the device, no host reads.

    LMDBReader (opened as usual)                    DeviceResidentDataset
    ----------------------------                    ---------------------
    keys, shard, epoch order, (epoch, position) --> next_indices(): the plan of next_batch()
    load_batch(chunk) once per record ------------> images (N, C, H, W) uint8 on the device
                                                    labels (N,) int32 on the device
                                                    next_batch() = index_select(rows of the plan)

Food-101's 75,750 training images at 256x256 are ~15 GB of uint8: they fit an H100, and then a
batch costs one gather on the GPU instead of LMDB reads, a host copy and a PCIe transfer.

The order of the batches is not re-implemented here: the reader plans it (`next_indices`, the very
plan `next_batch` reads), so both paths give the same records in the same order, keep the same
(epoch, position) and `last_keys`, and share one `state_dict()` format: a checkpoint written with
either resumes with either.

What is held: without shuffling a rank only ever reads its fixed shard (every world_size-th
record), so only that is loaded; with shuffling a rank's share of each epoch is drawn from the
whole permutation, so every rank holds every record.
"""
import sys

import numpy as np
import torch


class DeviceResidentDataset:
    """Wraps an `LMDBReader`: its records loaded once onto `device`, its stream served from there.
    Anything not defined here (keys, image_shape, meta, classes, epoch, position, last_keys,
    shard_size, epoch_order ...) is the reader's."""

    MARGIN_BYTES = 2 << 30      # left free on a GPU for the model, activations and workspace
    MARGIN_FRACTION = 0.10

    def __init__(self, reader, device, *, chunk=1024, progress=True):
        if reader.transform is not None:
            raise ValueError("DeviceResidentDataset serves raw batches; %r has a transform: "
                             "augment the batch on the device instead" % (reader,))
        self.reader = reader
        self.device = torch.device(device)
        n = len(reader.keys)
        if reader.shuffle or reader.world_size == 1:
            held = np.arange(n)
        else:
            held = np.arange(reader.rank, n, reader.world_size)
        self.rows = np.full(n, -1, np.int64)    # key index -> row of the resident tensors
        self.rows[held] = np.arange(len(held))
        shape = (len(held),) + tuple(reader.image_shape)
        dtype = torch.from_numpy(np.empty(0, reader.image_dtype)).dtype
        self.nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
        self._check_fits(self.nbytes, len(held))
        self.images = torch.empty(shape, dtype=dtype, device=self.device)
        self.labels = torch.empty(len(held), dtype=torch.int32, device=self.device)
        from tqdm import tqdm
        with tqdm(total=len(held), unit="img", disable=not (progress and sys.stderr.isatty()),
                  desc="loading %s into %s" % (reader.path, self.device)) as bar:
            for start in range(0, len(held), chunk):
                indices = held[start:start + chunk]
                images, labels = reader.load_batch(indices)
                end = start + len(indices)
                self.images[start:end].copy_(torch.from_numpy(images))
                self.labels[start:end].copy_(torch.from_numpy(labels))
                bar.update(len(indices))

    def _check_fits(self, nbytes, count):
        if self.device.type != "cuda":
            return      # host memory: the OS says no soon enough, and swaps before that
        free, total = torch.cuda.mem_get_info(self.device)
        margin = max(self.MARGIN_BYTES, int(self.MARGIN_FRACTION * total))
        if nbytes + margin > free:
            raise MemoryError(
                "%s: %d records of %s %s need %.2f GB on %s, but only %.2f GB of %.2f GB are free "
                "(keeping %.2f GB for training); set data.device_resident=false to read from the "
                "LMDB instead" % (self.reader.path, count, self.reader.image_dtype,
                                  list(self.reader.image_shape), nbytes / 1e9, self.device,
                                  free / 1e9, total / 1e9, margin / 1e9))

    def __getattr__(self, name):
        # only reached for names not found on this object: the reader's info and state
        if name == "reader":
            raise AttributeError(name)
        return getattr(self.reader, name)

    def next_batch(self, batch_size=None):
        """The next full batch of the reader's endless stream, as device tensors:
        images (N, C, H, W) of the stored dtype and labels int32 (N,)."""
        indices = self.reader.next_indices(batch_size)
        rows = torch.from_numpy(self.rows[indices]).to(self.device)
        return self.images.index_select(0, rows), self.labels.index_select(0, rows)

    def state_dict(self):
        return self.reader.state_dict()

    def load_state_dict(self, state):
        self.reader.load_state_dict(state)

    def close(self):
        """Frees the device memory and closes the reader."""
        self.images = self.labels = None
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "DeviceResidentDataset(%r on %s, %.2f GB)" % (self.reader, self.device, self.nbytes / 1e9)
