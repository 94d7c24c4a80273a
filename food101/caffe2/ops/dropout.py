"""Dropout, as Caffe2: training keeps each element with probability 1 - ratio and scales it
by 1 / (1 - ratio); is_test=1 passes X through. The keep-mask (bool) is the second output."""
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator


@operator("Dropout", context=True)
def dropout(X, *, ratio=0.5, is_test=0, ctx):
    """(Y, mask); the mask draws from the workspace RNG of the op's device (ctx.generator)."""
    if is_test:
        # Caffe2 leaves the mask unwritten in test mode; give an all-kept mask if one is asked for
        return (X, torch.ones_like(X, dtype=torch.bool)) if ctx.num_outputs > 1 else X
    enforce(0.0 <= ratio <= 1.0, "ratio=%r must be in [0, 1]" % (ratio,))
    generator = ctx.generator
    keep = torch.rand(X.shape, generator=generator, device=generator.device) >= ratio
    keep = keep.to(X.device)
    scale = 0.0 if ratio >= 1.0 else 1.0 / (1.0 - ratio)
    return X * keep * scale, keep
