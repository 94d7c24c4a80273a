"""Augmentation of uint8 NCHW batches on the training device (CPU or CUDA).

The database holds uint8 images; augmentation runs where the model runs, on the uint8 batch,
and produces the float input in one pass:

    uint8 (N, C, H, W) --crop (per-sample offsets), mirror--> uint8 (N, C, crop, crop)
                       --(x - mean) * scale------------------> float32 (or bf16/fp16),
                                                                 NCHW or channels_last

Training: a random crop (227 for the Caffe2 SqueezeNet, 224 for most torchvision models) with
independent offsets per image, and a horizontal mirror with probability 1/2. Evaluation: the
centre crop. A crop of 0 means no crop: the whole record, which may be non-square (Caffe's
transform_param without crop_size). Mean subtraction uses Caffe2's BGR mean 104/117/123 by
default or the dataset's own (`LMDBReader.mean_bgr`), one value per channel (or one for all);
or a whole C x H x W mean image of the records' size (a Caffe `mean_file`), subtracted as
Caffe's DataTransformer does: each pixel minus the mean pixel at its source position (crop
offset included, the mirror applied after).
`scale` multiplies after it (Caffe2's Sub then Scale, Caffe's (x - mean) * scale).

Random choices come from a `torch.Generator` only, so the same generator state gives the same
batch on any device. On CUDA the crop is one gather kernel over the whole batch; on CPU a loop
of per-image numpy views is faster (a mirror is a negative stride, and torch's intra-op threads
only add overhead on images this small); both give identical results. CPU outputs are recycled
host buffers (see buffers.py), which saves the page faults of a fresh 40 MB array per batch.
"""
import cv2
import numpy as np
import torch

from food101.data.buffers import HostBuffers

# The Model Zoo SqueezeNet's per-channel BGR mean: the one definition (training config, deploy
# metadata and the zoo builders take it from here).
BGR_MEAN = (104.0, 117.0, 123.0)
_OUTPUTS = HostBuffers(keep=4)    # CPU output batches, recycled once the caller drops them


def _as_tensor(images):
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dim() != 4:
        raise ValueError("expected an NCHW batch, got shape %s" % (tuple(images.shape),))
    return images


def crop_size_of(crop, height, width):
    """(rows, cols) a crop takes from `height` x `width` images: crop x crop, or the whole image
    for crop 0 (no crop, as Caffe without crop_size)."""
    if not crop:
        return int(height), int(width)
    if crop > height or crop > width:
        raise ValueError("crop %d is larger than the %dx%d images" % (crop, height, width))
    return int(crop), int(crop)


def crop_params(n, height, width, crop, *, mirror=True, generator=None):
    """Random (top, left, flip) for `n` images, drawn on the generator's device (CPU default)."""
    rows, cols = crop_size_of(crop, height, width)
    device = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(0, height - rows + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, width - cols + 1, (n,), generator=generator, device=device)
    if mirror:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=device)
    return top, left, flip


def crop_normalize(images, top, left, flip, crop, *, mean=BGR_MEAN, scale=1.0,
                   dtype=torch.float32, channels_last=False, method=None):
    """Crop each image at its (top, left), mirror where `flip`, subtract `mean`, multiply by
    `scale`: uint8 (N, C, H, W) -> `dtype` (N, C, crop, crop) on the images' device (crop 0:
    (N, C, H, W), the whole images).

    mean: one value per channel (or one for all), or a C x H x W mean image of the images' own
    size, cropped and mirrored with each image (a torch tensor is used where it lies).

    method: "numpy" (per-image strided views, the CPU default; the output buffer is recycled)
    or "gather" (one indexing kernel over the batch, the default elsewhere)."""
    images = _as_tensor(images)
    n, c, h, w = images.shape
    device = images.device
    crop = crop_size_of(crop, h, w)
    if method is None:
        method = "numpy" if device.type == "cpu" else "gather"
    if method == "numpy":
        if device.type != "cpu":
            raise ValueError("method='numpy' needs a CPU batch, got %s" % device)
        out = _crop_numpy(images.numpy(), top.tolist(), left.tolist(), flip.tolist(), crop,
                          mean_values(mean, c, h, w), float(scale), channels_last)
    else:
        out = _crop_gather(images, top, left, flip, crop, mean_values(mean, c, h, w, device),
                           float(scale), channels_last)
    return out if dtype == torch.float32 else out.to(dtype)


def is_mean_image(mean):
    """True for a C x H x W mean image (a Caffe mean_file), False for per-channel values."""
    return mean is not None and getattr(mean, "ndim", np.ndim(mean)) == 3


def check_mean_image(mean, image_shape, mean_name="the mean image", images_name="the images"):
    """A ValueError naming both unless the C x H x W mean image has the records' size (Caffe's
    DataTransformer requires it: the mean pixel is taken at each source pixel's position)."""
    shape, images = tuple(int(d) for d in mean.shape), tuple(int(d) for d in image_shape)
    if shape != images:
        raise ValueError("%s is a %s mean image but %s are %s (C x H x W): a mean image must have "
                         "the records' size, as Caffe requires; rebuild it for these records "
                         "(compute_image_mean) or use per-channel data.mean values" % (
                             mean_name, "x".join(map(str, shape)), images_name,
                             "x".join(map(str, images))))


def mean_values(mean, channels, height, width, device=None):
    """The mean as an array to subtract: (C, 1, 1) per channel, or the (C, H, W) mean image
    checked against the images' size; a torch tensor on `device` when a device is given."""
    if is_mean_image(mean):
        check_mean_image(mean, (channels, height, width))
        if device is None:
            return _float_array(mean)
        if isinstance(mean, torch.Tensor) and mean.device == torch.device(device) \
                and mean.dtype == torch.float32:
            return mean  # already where it is used (Augment copies it there once)
        return torch.as_tensor(_float_array(mean)).to(device)
    values = np.zeros(channels, np.float32) if mean is None else _float_array(mean).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, channels)
    if values.size != channels:
        raise ValueError("mean has %d values for %d channels" % (values.size, channels))
    values = values.reshape(channels, 1, 1)
    return values if device is None else torch.from_numpy(values).to(device)


def _float_array(mean):
    return np.asarray(mean.cpu() if isinstance(mean, torch.Tensor) else mean, np.float32)


def _crop_numpy(images, tops, lefts, flips, crop, mean, scale, channels_last):
    """`images`: an (N, C, H, W) array or a sequence of (C, H, W) arrays (record views);
    `crop`: (rows, cols)."""
    n, c = len(images), images[0].shape[0]
    rows, cols = crop
    if channels_last:      # an NHWC array seen as NCHW is a channels_last tensor
        out_nhwc = _OUTPUTS.empty((n, rows, cols, c), np.float32)
        out = out_nhwc.transpose(0, 3, 1, 2)
    else:
        out = _OUTPUTS.empty((n, c, rows, cols), np.float32)
    image_mean = mean.shape[1:] != (1, 1)   # (C, H, W): cropped and mirrored with each image
    flat_mean = None if image_mean else mean.reshape(c, 1)
    mirrored = np.empty((c, rows, cols), images[0].dtype)
    for i in range(n):
        window = (slice(None), slice(tops[i], tops[i] + rows), slice(lefts[i], lefts[i] + cols))
        patch = images[i][window]
        if flips[i]:
            # numpy casts from a negative stride slowly; OpenCV mirrors a plane with SIMD
            for channel in range(c):
                cv2.flip(patch[channel], 1, dst=mirrored[channel])
            patch = mirrored
        target = out[i]
        target[...] = patch          # cast, then float-float arithmetic: faster than one mixed ufunc
        if image_mean:               # Caffe: the mean at the source pixel, mirrored with it
            target -= mean[window][:, :, ::-1] if flips[i] else mean[window]
        elif channels_last:
            target -= mean
        else:                        # as (C, H*W): long contiguous rows, a faster inner loop
            target = target.reshape(c, -1)
            target -= flat_mean
        if scale != 1.0:
            target *= scale
    return torch.from_numpy(out_nhwc).permute(0, 3, 1, 2) if channels_last else torch.from_numpy(out)


def _crop_gather(images, top, left, flip, crop, mean, scale, channels_last):
    n, c = images.shape[:2]
    device = images.device
    top, left, flip = top.to(device), left.to(device), flip.to(device)
    height, width = crop
    steps = torch.arange(width, device=device)
    rows = top[:, None] + torch.arange(height, device=device)               # (N, crop rows)
    cols = left[:, None] + torch.where(flip[:, None], width - 1 - steps, steps)
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indices around a slice give (N, crop, crop, C); the permute is a view
    patches = images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if mean.shape[1:] != (1, 1):   # a mean image: gathered at the same (mirrored) positions
        mean = mean[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((n, c, height, width), dtype=torch.float32, device=device, memory_format=fmt)
    torch.sub(patches, mean, out=out)
    if scale != 1.0:
        out.mul_(scale)     # (x - mean) * scale in this order on every path: identical rounding
    return out


def random_crop_mirror(images, crop=227, *, mirror=True, mean=BGR_MEAN, scale=1.0, generator=None,
                       dtype=torch.float32, channels_last=False):
    """Training augmentation: random per-image crop, random mirror, mean subtraction, scale."""
    images = _as_tensor(images)
    n, _, h, w = images.shape
    top, left, flip = crop_params(n, h, w, crop, mirror=mirror, generator=generator)
    return crop_normalize(images, top, left, flip, crop, mean=mean, scale=scale, dtype=dtype,
                          channels_last=channels_last)


def center_crop(images, crop=227, *, mean=BGR_MEAN, scale=1.0, dtype=torch.float32, channels_last=False):
    """Evaluation: the centred crop of every image, mean subtraction, scale."""
    images = _as_tensor(images)
    n, _, h, w = images.shape
    rows, cols = crop_size_of(crop, h, w)
    top = torch.full((n,), (h - rows) // 2, dtype=torch.long)
    left = torch.full((n,), (w - cols) // 2, dtype=torch.long)
    flip = torch.zeros(n, dtype=torch.bool)
    return crop_normalize(images, top, left, flip, crop, mean=mean, scale=scale, dtype=dtype,
                          channels_last=channels_last)


class Augment:
    """A configured augmentation: `Augment(227, train=True)(uint8_batch)` -> float batch.

    Moves a host batch to `device` first (non_blocking from pinned memory). Also usable as an
    `LMDBReader` transform: `aug(images, labels, generator)` -> (float images, int32 labels),
    with the reader's per-batch generator instead of `self.generator`."""

    def __init__(self, crop=227, *, train=True, mirror=True, mean=BGR_MEAN, scale=1.0, device="cpu",
                 generator=None, dtype=torch.float32, channels_last=False):
        self.crop, self.train, self.mirror = crop, train, mirror
        self.mean, self.scale, self.dtype, self.channels_last = mean, scale, dtype, channels_last
        self.device = torch.device(device)
        if is_mean_image(mean) and self.device.type != "cpu":  # copied to the device once
            self.mean = mean_values(mean, *mean.shape, device=self.device)
        self.generator = generator

    def __call__(self, images, labels=None, generator=None):
        images = _as_tensor(images)
        if images.device != self.device:
            images = images.to(self.device, non_blocking=True)
        kw = dict(mean=self.mean, scale=self.scale, dtype=self.dtype, channels_last=self.channels_last)
        if self.train:
            out = random_crop_mirror(images, self.crop, mirror=self.mirror,
                                     generator=generator if generator is not None else self.generator, **kw)
        else:
            out = center_crop(images, self.crop, **kw)
        if labels is None:
            return out
        labels = torch.as_tensor(labels)
        return out, labels.to(self.device, non_blocking=True) if labels.device != self.device else labels

    def apply_to_records(self, images, labels, generator=None):
        """The reader's zero-copy path: `images` is a list of (C, H, W) uint8 views straight into
        the database (valid only during this call), cropped into the float batch directly, so
        the uint8 batch is never assembled. CPU only; same result as __call__ on the batch."""
        if self.device.type != "cpu" or self.dtype != torch.float32:
            return NotImplemented
        n, (c, h, w) = len(images), images[0].shape
        if self.train:
            top, left, flip = crop_params(n, h, w, self.crop, mirror=self.mirror,
                                          generator=generator if generator is not None else self.generator)
        else:
            rows, cols = crop_size_of(self.crop, h, w)
            top, left = [(h - rows) // 2] * n, [(w - cols) // 2] * n
            flip = [False] * n
        tolist = (lambda v: v.tolist() if isinstance(v, torch.Tensor) else v)
        out = _crop_numpy(images, tolist(top), tolist(left), tolist(flip), crop_size_of(self.crop, h, w),
                          mean_values(self.mean, c, h, w), float(self.scale), self.channels_last)
        return out, torch.from_numpy(np.asarray(labels, np.int32))

    def __repr__(self):
        mean = ("%s mean image" % "x".join(map(str, self.mean.shape)) if is_mean_image(self.mean)
                else self.mean)
        return "Augment(crop=%d, train=%s, mirror=%s, mean=%s, scale=%g, device=%s)" % (
            self.crop, self.train, self.mirror, mean, self.scale, self.device)
