"""A Caffe mean_file (a C x H x W mean image) in the augmentation: each pixel minus the mean at
its source position, crop offset included, the mirror applied after, as Caffe's
DataTransformer::Transform does; on the numpy and the gather path, training and centre crops."""
import numpy as np
import pytest
import torch

from food101.data.augment import (Augment, center_crop, check_mean_image, crop_normalize,
                                  crop_params, random_crop_mirror)


def caffe_transform(datum, mean, crop, h_off, w_off, do_mirror, scale):
    """data_transformer.cpp's loop over one uint8 datum (C, H, W) with a mean_file, by flat
    indices as Caffe writes it (float32 arithmetic)."""
    channels, datum_height, datum_width = datum.shape
    data, mean = datum.ravel(), mean.astype(np.float32).ravel()
    out = np.empty(channels * crop * crop, np.float32)
    for c in range(channels):
        for h in range(crop):
            for w in range(crop):
                data_index = (c * datum_height + h_off + h) * datum_width + w_off + w
                top_index = (c * crop + h) * crop + ((crop - 1 - w) if do_mirror else w)
                out[top_index] = (np.float32(data[data_index]) - mean[data_index]) * np.float32(scale)
    return out.reshape(channels, crop, crop)


@pytest.fixture()
def records():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 12, 14), dtype=np.uint8)
    mean = rng.uniform(40, 200, (3, 12, 14)).astype(np.float32)
    return images, mean


@pytest.mark.parametrize("method", ["numpy", "gather"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_mean_image_at_the_source_pixel_with_crop_and_mirror(records, method, channels_last):
    images, mean = records
    top, left = torch.tensor([0, 3, 2, 3, 1]), torch.tensor([0, 5, 3, 0, 2])
    flip = torch.tensor([False, True, True, False, True])
    out = crop_normalize(torch.from_numpy(images), top, left, flip, 9, mean=mean, scale=0.0125,
                         method=method, channels_last=channels_last)
    expected = np.stack([caffe_transform(images[i], mean, 9, int(top[i]), int(left[i]),
                                         bool(flip[i]), 0.0125) for i in range(5)])
    np.testing.assert_array_equal(out.numpy(), expected)  # same float32 operations: bit for bit


def test_random_and_centre_crops_and_the_reader_path(records):
    images, mean = records
    g = torch.Generator().manual_seed(4)
    out = random_crop_mirror(images, 8, mean=mean, generator=g)
    top, left, flip = crop_params(5, 12, 14, 8, generator=torch.Generator().manual_seed(4))
    expected = np.stack([caffe_transform(images[i], mean, 8, int(top[i]), int(left[i]),
                                         bool(flip[i]), 1.0) for i in range(5)])
    np.testing.assert_array_equal(out.numpy(), expected)
    # Caffe's TEST phase: the centred offsets (H - crop) / 2, (W - crop) / 2, no mirror
    centred = center_crop(images, 8, mean=mean)
    np.testing.assert_array_equal(centred.numpy(), np.stack(
        [caffe_transform(images[i], mean, 8, 2, 3, False, 1.0) for i in range(5)]))
    # the reader's zero-copy path (record views) gives the same batch
    aug = Augment(8, train=True, mean=mean)
    views, _ = aug.apply_to_records(list(images), [0] * 5, torch.Generator().manual_seed(4))
    np.testing.assert_array_equal(views.numpy(), expected)
    assert "3x12x14 mean image" in repr(aug)


def test_a_mean_image_of_another_size_is_refused(records):
    images, mean = records
    with pytest.raises(ValueError, match="3x12x12 mean image but the images are 3x12x14"):
        center_crop(images, 8, mean=mean[:, :, :12])
    with pytest.raises(ValueError, match=r"mean\.binaryproto is a 3x10x10 mean image but the "
                                         r"records of train_lmdb are 3x12x14"):
        check_mean_image(np.zeros((3, 10, 10)), (3, 12, 14), "mean.binaryproto",
                         "the records of train_lmdb")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mean_image_matches_cpu(records):
    images, mean = records
    aug = Augment(8, train=True, mean=mean, device="cuda")
    out = aug(images, generator=torch.Generator("cuda").manual_seed(2))
    top, left, flip = crop_params(5, 12, 14, 8, generator=torch.Generator("cuda").manual_seed(2))
    cpu = crop_normalize(torch.from_numpy(images), top.cpu(), left.cpu(), flip.cpu(), 8, mean=mean)
    torch.testing.assert_close(out.cpu(), cpu, rtol=0, atol=0)
