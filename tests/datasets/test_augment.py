"""Augmentation of uint8 NCHW batches: crop / mirror / mean / scale, determinism, both kernels."""
import numpy as np
import pytest
import torch

from food101.data.augment import (BGR_MEAN, Augment, center_crop, crop_normalize, crop_params,
                                  random_crop_mirror)


@pytest.fixture()
def batch():
    return torch.randint(0, 256, (6, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def reference(images, top, left, flip, crop, mean, scale):
    out = []
    for i in range(images.shape[0]):
        patch = images[i, :, top[i]:top[i] + crop, left[i]:left[i] + crop].double()
        if flip[i]:
            patch = patch.flip(-1)
        out.append((patch - torch.tensor(mean, dtype=torch.float64).view(3, 1, 1)) * scale)
    return torch.stack(out)


@pytest.mark.parametrize("method", ["numpy", "gather"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_crop_mirror_mean_scale(batch, method, channels_last):
    top, left, flip = torch.tensor([0, 4, 2, 4, 1, 0]), torch.tensor([0, 8, 3, 0, 8, 5]), \
        torch.tensor([False, True, True, False, True, False])
    out = crop_normalize(batch, top, left, flip, 16, mean=(10.0, 20.5, 30.0), scale=0.5,
                         method=method, channels_last=channels_last)
    assert out.dtype == torch.float32 and out.shape == (6, 3, 16, 16)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    expected = reference(batch, top.tolist(), left.tolist(), flip.tolist(), 16, (10.0, 20.5, 30.0), 0.5)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)


def test_both_kernels_are_bit_identical(batch):
    g = torch.Generator().manual_seed(1)
    top, left, flip = crop_params(6, 20, 24, 17, generator=g)
    for scale in (1.0, 0.017):
        for mean in (BGR_MEAN, (104.3, 116.9, 122.2), None):
            a = crop_normalize(batch, top, left, flip, 17, mean=mean, scale=scale, method="numpy")
            b = crop_normalize(batch, top, left, flip, 17, mean=mean, scale=scale, method="gather")
            assert torch.equal(a, b)


def test_random_crop_is_deterministic_per_generator_and_varies_per_sample(batch):
    a = random_crop_mirror(batch, 16, generator=torch.Generator().manual_seed(5))
    b = random_crop_mirror(batch, 16, generator=torch.Generator().manual_seed(5))
    c = random_crop_mirror(batch, 16, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    top, left, flip = crop_params(64, 20, 24, 16, generator=torch.Generator().manual_seed(0))
    assert len(set(zip(top.tolist(), left.tolist()))) > 10            # offsets differ per image
    assert 10 < int(flip.sum()) < 54
    assert int(top.max()) == 4 and int(left.max()) == 8 and int(top.min()) == 0
    _, _, no_flip = crop_params(64, 20, 24, 16, mirror=False, generator=torch.Generator().manual_seed(0))
    assert not no_flip.any()


def test_center_crop_matches_slicing(batch):
    out = center_crop(batch.numpy(), 16, mean=BGR_MEAN)
    expected = batch[:, :, 2:18, 4:20].float() - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)
    assert torch.equal(out, expected)


def test_outputs_are_not_shared_between_calls(batch):
    first = center_crop(batch, 16)
    snapshot = first.clone()
    for _ in range(6):
        center_crop(batch.flip(0), 16)
    assert torch.equal(first, snapshot)


def test_errors(batch):
    with pytest.raises(ValueError, match="crop 21 is larger"):
        random_crop_mirror(batch, 21)
    with pytest.raises(ValueError, match="NCHW"):
        center_crop(batch[0], 8)
    with pytest.raises(ValueError, match="mean has 2 values"):
        center_crop(batch, 8, mean=(1.0, 2.0))


def test_augment_object_and_reader_transform_signature(batch):
    train = Augment(16, train=True, generator=torch.Generator().manual_seed(3), dtype=torch.bfloat16)
    x = train(batch)
    assert x.dtype == torch.bfloat16 and x.shape == (6, 3, 16, 16)
    labels = np.arange(6, dtype=np.int32)
    x2, y = train(batch.numpy(), labels, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and y.dtype == torch.int32 and y.tolist() == list(range(6))
    evaluation = Augment(16, train=False)
    assert torch.equal(evaluation(batch), center_crop(batch, 16))


@pytest.mark.cuda
def test_cuda_matches_cpu(batch):
    g = torch.Generator().manual_seed(2)
    top, left, flip = crop_params(6, 20, 24, 16, generator=g)
    cpu = crop_normalize(batch, top, left, flip, 16, scale=0.25)
    gpu = crop_normalize(batch.cuda(), top, left, flip, 16, scale=0.25)
    assert gpu.is_cuda and torch.equal(cpu, gpu.cpu())
    aug = Augment(16, device="cuda", generator=torch.Generator().manual_seed(1))
    ref = Augment(16, device="cpu", generator=torch.Generator().manual_seed(1))
    assert torch.equal(aug(batch).cpu(), ref(batch))


def test_float_batches_from_float_records(batch):
    """FLOAT records (Caffe2's float LMDB example) go through the same path."""
    top, left, flip = crop_params(6, 20, 24, 16, generator=torch.Generator().manual_seed(4))
    as_float = batch.float()
    for method in ("numpy", "gather"):
        out = crop_normalize(as_float, top, left, flip, 16, method=method)
        assert torch.equal(out, crop_normalize(batch, top, left, flip, 16, method=method))
