"""SqueezeNet v1.1 written by hand as a torch nn.Module: the baseline the benchmarks compare to.

Same topology, blob names and Caffe semantics as the Model Zoo predict net (ceil-mode pooling for
`legacy_pad=3`, softmax over N x C x 1 x 1), weights taken from the same zoo blobs, so the only
difference from running the NetDef is the runtime itself.
"""
import torch
import torch.nn.functional as F
from torch import nn

FIRES = [("fire2", 16, 64), ("fire3", 16, 64), ("fire4", 32, 128), ("fire5", 32, 128),
         ("fire6", 48, 192), ("fire7", 48, 192), ("fire8", 64, 256), ("fire9", 64, 256)]
POOL_AFTER = {"fire3": "pool3", "fire5": "pool5"}


class SqueezeNet(nn.Module):
    def __init__(self, weights, trainable=None):
        """weights: {zoo blob name: tensor}; trainable: names that get gradients (default all)."""
        super().__init__()
        self.blob_names = sorted(weights)
        for name in self.blob_names:
            requires = trainable is None or name in trainable
            self.register_parameter(name.replace("/", "__"),
                                    nn.Parameter(weights[name].clone(), requires_grad=requires))

    def _p(self, blob):
        return getattr(self, blob.replace("/", "__"))

    def _conv(self, x, name, pad=0, stride=1):
        return F.relu(F.conv2d(x, self._p(name + "_w"), self._p(name + "_b"), stride=stride, padding=pad))

    def features(self, x):
        x = self._conv(x, "conv1", stride=2)
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for name, _, _ in FIRES:
            s = self._conv(x, name + "/squeeze1x1")
            x = torch.cat([self._conv(s, name + "/expand1x1"), self._conv(s, name + "/expand3x3", pad=1)], 1)
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        return x

    def forward(self, x):
        x = self._conv(self.features(x), "conv10")
        return torch.softmax(F.adaptive_avg_pool2d(x, 1), dim=1)


def label_cross_entropy(probs, labels):
    """Caffe2's LabelCrossEntropy + AveragedLoss on N x C x 1 x 1 probabilities."""
    picked = probs.flatten(1).gather(1, labels.long().view(-1, 1))
    return -torch.log(picked.clamp_min(1e-20)).mean()
