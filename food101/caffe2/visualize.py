"""caffe2.python.visualize: tensors as image grids with matplotlib.

    visualize.NCHW.ShowMultiple(workspace.FetchBlob("data"))   # a batch, N x C x H x W
    visualize.NHWC.ShowSingle(image)                           # H x W x 3 (or H x W)
    visualize.PatchVisualizer(gap=2).ShowImages(conv1_w)       # returns the grid it drew

Patches are 2-D (gray), H x W x 1 (gray) or H x W x 3 (colour); a flat vector is taken as a
square patch (n*n or n*n*3 values). A grid is ceil(sqrt(N)) columns wide unless `ncols` is
given; the gaps are filled with bg_func(patches) (the mean by default). The drawing goes to
the current pyplot figure; the module functions return nothing, a PatchVisualizer returns the
array it drew.
"""
import numpy as np
from matplotlib import cm, pyplot


def ChannelFirst(arr):
    """HWC -> CHW (the last three axes)."""
    return np.moveaxis(arr, -1, -3)


def ChannelLast(arr):
    """CHW -> HWC (the last three axes)."""
    return np.moveaxis(arr, -3, -1)


class PatchVisualizer:
    def __init__(self, gap=1):
        self.gap = gap

    def get_patch_shape(self, patch):
        """A flat patch's square shape: (n, n) or (n, n, 3)."""
        for channels in (1, 3):
            side = np.sqrt(patch.size / channels)
            if side == np.floor(side):
                side = int(side)
                return (side, side) if channels == 1 else (side, side, 3)
        raise ValueError("a patch of %d values is neither n*n nor n*n*3; reshape it first" % patch.size)

    def ShowSingle(self, patch, cmap=None):
        patch = np.asarray(patch)
        if patch.ndim == 1:
            patch = patch.reshape(self.get_patch_shape(patch))
        elif patch.ndim > 2 and patch.shape[2] != 3:
            raise ValueError("a patch is H x W or H x W x 3, got shape %s" % (patch.shape,))
        if patch.ndim == 2 and cmap is None:
            cmap = cm.gray
        pyplot.imshow(patch, cmap=cmap)
        return patch

    def ShowMultiple(self, patches, ncols=None, cmap=None, bg_func=np.mean):
        patches = np.asarray(patches)
        count = patches.shape[0]
        ncols = ncols or int(np.ceil(np.sqrt(count)))
        nrows = int(np.ceil(count / float(ncols)))
        if patches.ndim == 2:
            patches = patches.reshape((count,) + self.get_patch_shape(patches[0]))
        if patches.ndim == 4:
            if patches.shape[3] == 1:
                patches = patches[..., 0]
            elif patches.shape[3] != 3:
                raise ValueError("patches are N x H x W x 1 or x 3, got shape %s" % (patches.shape,))
        if patches.ndim == 3 and cmap is None:
            cmap = cm.gray
        step_h, step_w = patches.shape[1] + self.gap, patches.shape[2] + self.gap
        grid_shape = (nrows * step_h - self.gap, ncols * step_w - self.gap) + patches.shape[3:]
        image = np.full(grid_shape, bg_func(patches), dtype=np.float64)
        for index, patch in enumerate(patches):
            top, left = (index // ncols) * step_h, (index % ncols) * step_w
            image[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
        pyplot.imshow(image, cmap=cmap, interpolation="nearest")
        pyplot.axis("off")
        return image

    def ShowImages(self, patches, *args, **kwargs):
        """ShowMultiple after scaling the values to [0, 1]."""
        patches = np.asarray(patches, dtype=np.float64)
        patches = patches - patches.min()
        patches = patches / (patches.max() + np.finfo(np.float64).eps)
        return self.ShowMultiple(patches, *args, **kwargs)

    def ShowChannels(self, patch, cmap=None, bg_func=np.mean):
        """Each channel of an H x W x C patch as its own gray patch."""
        patch = np.asarray(patch)
        if patch.ndim != 3:
            raise ValueError("ShowChannels needs an H x W x C patch, got shape %s" % (patch.shape,))
        return self.ShowMultiple(np.moveaxis(patch, -1, 0), cmap=cmap, bg_func=bg_func)


_default_visualizer = PatchVisualizer()


class NHWC:
    @staticmethod
    def ShowSingle(*args, **kwargs):
        _default_visualizer.ShowSingle(*args, **kwargs)

    @staticmethod
    def ShowMultiple(*args, **kwargs):
        _default_visualizer.ShowMultiple(*args, **kwargs)

    @staticmethod
    def ShowImages(*args, **kwargs):
        _default_visualizer.ShowImages(*args, **kwargs)

    @staticmethod
    def ShowChannels(*args, **kwargs):
        _default_visualizer.ShowChannels(*args, **kwargs)


class NCHW:
    @staticmethod
    def ShowSingle(patch, *args, **kwargs):
        _default_visualizer.ShowSingle(ChannelLast(patch), *args, **kwargs)

    @staticmethod
    def ShowMultiple(patch, *args, **kwargs):
        _default_visualizer.ShowMultiple(ChannelLast(patch), *args, **kwargs)

    @staticmethod
    def ShowImages(patch, *args, **kwargs):
        _default_visualizer.ShowImages(ChannelLast(patch), *args, **kwargs)

    @staticmethod
    def ShowChannels(patch, *args, **kwargs):
        _default_visualizer.ShowChannels(ChannelLast(patch), *args, **kwargs)
