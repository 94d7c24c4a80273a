"""Blobs queues: a bounded queue of records (one tensor per blob) shared by the nets of a plan,
Caffe2's producer/consumer pipeline (queue_ops.h).

    CreateBlobsQueue() -> queue                       (capacity, num_blobs)
    EnqueueBlobs(queue, b1..bn) -> b1..bn             blocks while full; fails once closed
    DequeueBlobs(queue) -> b1..bn                     blocks while empty (timeout_secs > 0:
                                                      at most that long); fails once closed and
                                                      empty, or on the timeout
    SafeEnqueueBlobs(queue, b1..bn) -> b1..bn, status     status True instead of failing
    SafeDequeueBlobs(queue) -> b1..bn, status             (num_records > 1: that many records
                                                          concatenated along dim 0)
    WeightedSampleDequeueBlobs(q1..qk) -> b1..bn, status  reads from a queue drawn by weights
    CloseBlobsQueue(queue)                            wakes every waiting reader and writer
A status is a bool scalar: True when the queue was closed (a consumer step's should_stop_blob).
"""
import random
import threading

import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator


class BlobsQueue:
    """A closable bounded FIFO of records, safe across the threads of concurrent plan steps."""

    def __init__(self, capacity, num_blobs, name=""):
        self.capacity, self.num_blobs, self.name = capacity, num_blobs, name
        self._items = []
        self._closed = False
        self._cond = threading.Condition()

    def write(self, record):
        """False when the queue is (or gets) closed before there is room."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or len(self._items) < self.capacity)
            if self._closed:
                return False
            self._items.append(record)
            self._cond.notify_all()
            return True

    def read(self, timeout=None):
        """A record, or None when closed and empty, or when `timeout` seconds passed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._items, timeout=timeout)
            if not self._items:
                return None
            record = self._items.pop(0)
            self._cond.notify_all()
            return record

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __repr__(self):
        return "<BlobsQueue %r: %d/%d records of %d blobs%s>" % (
            self.name, len(self._items), self.capacity, self.num_blobs,
            ", closed" if self._closed else "")


def _queue(blob, op):
    enforce(isinstance(blob, BlobsQueue), "%s: input 0 must be a BlobsQueue (CreateBlobsQueue), "
            "got %s", op, type(blob).__name__)
    return blob


def _status(closed):
    return torch.tensor(bool(closed))


def _previous_outputs(ctx, count):
    """What the output blobs hold now: a dequeue that finds the queue closed leaves them."""
    blobs = ctx.workspace.blobs
    return tuple(blobs.get(name, torch.empty(0)) for name in ctx.op.output[:count])


@operator("CreateBlobsQueue", grad_inputs=())
def create_blobs_queue(*, capacity=1, num_blobs=1, enforce_unique_name=0, name="",
                       field_names=()):
    enforce(capacity > 0 and num_blobs > 0, "CreateBlobsQueue: capacity (%d) and num_blobs (%d) "
            "must be positive", capacity, num_blobs)
    return BlobsQueue(capacity, num_blobs, name)


@operator("CloseBlobsQueue", grad_inputs=())
def close_blobs_queue(queue):
    _queue(queue, "CloseBlobsQueue").close()
    return ()


@operator("EnqueueBlobs", grad_inputs=())
def enqueue_blobs(queue, *blobs):
    queue = _queue(queue, "EnqueueBlobs")
    enforce(len(blobs) == queue.num_blobs, "EnqueueBlobs: %d blobs for a queue of %d",
            len(blobs), queue.num_blobs)
    enforce(queue.write(tuple(b.detach().clone() for b in blobs)),
            "EnqueueBlobs: the queue is closed")
    return blobs


@operator("SafeEnqueueBlobs", grad_inputs=())
def safe_enqueue_blobs(queue, *blobs):
    queue = _queue(queue, "SafeEnqueueBlobs")
    enforce(len(blobs) == queue.num_blobs, "SafeEnqueueBlobs: %d blobs for a queue of %d",
            len(blobs), queue.num_blobs)
    written = queue.write(tuple(b.detach().clone() for b in blobs))
    return blobs + (_status(not written),)


@operator("DequeueBlobs", grad_inputs=())
def dequeue_blobs(queue, *, timeout_secs=0.0):
    queue = _queue(queue, "DequeueBlobs")
    record = queue.read(timeout=timeout_secs if timeout_secs > 0 else None)
    enforce(record is not None, "DequeueBlobs: %s", "timed out after %g s" % timeout_secs
            if not queue._closed else "the queue is closed and empty")
    return record


@operator("SafeDequeueBlobs", grad_inputs=(), context=True)
def safe_dequeue_blobs(queue, *, num_records=1, ctx):
    queue = _queue(queue, "SafeDequeueBlobs")
    records = []
    for _ in range(max(num_records, 1)):
        record = queue.read()
        if record is None:
            break
        records.append(record)
    if not records:
        return _previous_outputs(ctx, queue.num_blobs) + (_status(True),)
    if num_records <= 1:
        return tuple(records[0]) + (_status(False),)
    return tuple(torch.cat([r[i] for r in records]) for i in range(queue.num_blobs)) + \
        (_status(False),)


@operator("WeightedSampleDequeueBlobs", grad_inputs=(), context=True)
def weighted_sample_dequeue_blobs(*queues, weights=(), table_idx_blob=-1, ctx):
    """Reads one record from a queue drawn with probability weight / sum(weights); with
    table_idx_blob >= 0, that output holds the drawn queue's index (int32 [1])."""
    enforce(len(weights) == len(queues), "WeightedSampleDequeueBlobs: %d weights for %d queues",
            len(weights), len(queues))
    total = float(sum(weights))
    enforce(total > 0, "WeightedSampleDequeueBlobs: the weights must sum to a positive value")
    draw, cumulative, index = random.random() * total, 0.0, len(queues) - 1
    for i, w in enumerate(weights):
        cumulative += w
        if draw < cumulative:
            index = i
            break
    queue = _queue(queues[index], "WeightedSampleDequeueBlobs")
    count = len(ctx.op.output) - 1
    record = queue.read()
    outputs = list(_previous_outputs(ctx, count) if record is None else record)
    if 0 <= table_idx_blob < count:
        outputs[table_idx_blob] = torch.tensor([index], dtype=torch.int32)
    return tuple(outputs) + (_status(record is None),)
