"""caffe2.python.models.resnet: ResNet / ResNeXt builders on brew, blob names as in Caffe2.

    softmax, loss = resnet.create_resnet50(model, "data", num_input_channels=3, num_labels=101,
                                           label="label")
    softmax = resnet.create_resnet_32x32(model, "data", 3, num_groups=3, num_labels=10)

Residual components are numbered: "comp_<k>_conv_<i>", "comp_<k>_spatbn_<i>", "comp_<k>_sum_<i>",
projections "shortcut_projection_<k>[_spatbn]"; the nets equal Caffe2's op for op.
"""
import logging

from food101.caffe2 import brew

RESNEXT_BLOCK_CONFIG = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
    152: (3, 8, 36, 3), 200: (3, 24, 36, 3),
}
RESNEXT_STRIDES = [1, 2, 2, 2]
log = logging.getLogger("resnext_builder")
_MSRA = ("MSRAFill", {})


class ResNetBuilder:
    """Adds residual components to `model`, starting from `prev_blob`."""

    def __init__(self, model, prev_blob, no_bias, is_test, bn_epsilon=1e-5, bn_momentum=0.9):
        self.model, self.prev_blob, self.is_test = model, prev_blob, is_test
        self.no_bias = 1 if no_bias else 0
        self.bn_epsilon, self.bn_momentum = bn_epsilon, bn_momentum
        self.comp_count = self.comp_idx = 0

    def add_conv(self, in_filters, out_filters, kernel, stride=1, group=1, pad=0):
        self.comp_idx += 1
        name = "comp_%d_conv_%d" % (self.comp_count, self.comp_idx)
        self.prev_blob = brew.conv(self.model, self.prev_blob, name, in_filters, out_filters,
                                   weight_init=_MSRA, kernel=kernel, stride=stride, group=group,
                                   pad=pad, no_bias=self.no_bias)
        return self.prev_blob

    def add_relu(self):
        self.prev_blob = brew.relu(self.model, self.prev_blob, self.prev_blob)   # in place
        return self.prev_blob

    def add_spatial_bn(self, num_filters):
        name = "comp_%d_spatbn_%d" % (self.comp_count, self.comp_idx)
        self.prev_blob = brew.spatial_bn(self.model, self.prev_blob, name, num_filters,
                                         epsilon=self.bn_epsilon, momentum=self.bn_momentum,
                                         is_test=self.is_test)
        return self.prev_blob

    def _shortcut(self, blob, in_filters, out_filters, stride, bn_args):
        projected = brew.conv(self.model, blob, "shortcut_projection_%d" % self.comp_count,
                              in_filters, out_filters, weight_init=_MSRA, kernel=1,
                              stride=stride, no_bias=self.no_bias)
        if bn_args is None:
            return projected
        return brew.spatial_bn(self.model, projected,
                               "shortcut_projection_%d_spatbn" % self.comp_count, out_filters,
                               **bn_args, is_test=self.is_test)   # Caffe2's argument order

    def _close_component(self, shortcut, last):
        self.prev_blob = brew.sum(self.model, [shortcut, last],
                                  "comp_%d_sum_%d" % (self.comp_count, self.comp_idx))
        self.comp_idx += 1
        self.add_relu()
        self.comp_count += 1

    def add_bottleneck(self, input_filters, base_filters, output_filters, stride=1, group=1,
                       spatial_batch_norm=True):
        """1x1 -> 3x3 (stride, group) -> 1x1 with a projection when the widths differ
        (He et al., Figure 3 right). Returns output_filters."""
        self.comp_idx = 0
        shortcut = self.prev_blob
        for conv_args in ((input_filters, base_filters, 1, 1, 1, 0),
                          (base_filters, base_filters, 3, stride, group, 1)):
            self.add_conv(*conv_args)
            if spatial_batch_norm:
                self.add_spatial_bn(base_filters)
            self.add_relu()
        last = self.add_conv(base_filters, output_filters, kernel=1)
        if spatial_batch_norm:
            last = self.add_spatial_bn(output_filters)
        if output_filters != input_filters:
            bn = {"epsilon": self.bn_epsilon, "momentum": self.bn_momentum} if spatial_batch_norm else None
            shortcut = self._shortcut(shortcut, input_filters, output_filters, stride, bn)
        self._close_component(shortcut, last)
        return output_filters

    def add_simple_block(self, input_filters, num_filters, down_sampling=False,
                         spatial_batch_norm=True):
        """Two 3x3 convs (the first strided when down_sampling) with a projection shortcut."""
        self.comp_idx = 0
        stride = 2 if down_sampling else 1
        shortcut = self.prev_blob
        self.add_conv(input_filters, num_filters, kernel=3, stride=stride, pad=1)
        if spatial_batch_norm:
            self.add_spatial_bn(num_filters)
        self.add_relu()
        last = self.add_conv(num_filters, num_filters, kernel=3, pad=1)
        if spatial_batch_norm:
            last = self.add_spatial_bn(num_filters)
        if num_filters != input_filters:
            bn = {"epsilon": 1e-3} if spatial_batch_norm else None   # Caffe2 uses 1e-3 here
            shortcut = self._shortcut(shortcut, input_filters, num_filters, stride, bn)
        self._close_component(shortcut, last)


def create_resnet_32x32(model, data, num_input_channels, num_groups, num_labels, is_test=False):
    """The CIFAR-size residual net of He et al. (2015) section 4.2; num_groups is their n."""
    brew.conv(model, data, "conv1", num_input_channels, 16, kernel=3, stride=1)
    brew.spatial_bn(model, "conv1", "conv1_spatbn", 16, epsilon=1e-3, is_test=is_test)
    brew.relu(model, "conv1_spatbn", "relu1")
    builder = ResNetBuilder(model, "relu1", no_bias=0, is_test=is_test)
    widths = [16, 32, 64]
    previous = 16
    for group, width in enumerate(widths):
        for block in range(2 * num_groups):
            builder.add_simple_block(previous if block == 0 else width, width,
                                     down_sampling=block == 0 and group > 0)
        previous = width
    brew.average_pool(model, builder.prev_blob, "final_avg", kernel=8, stride=1)
    brew.fc(model, "final_avg", "last_out", 64, num_labels)
    return brew.softmax(model, "last_out", "softmax")


def create_resnext(model, data, num_input_channels, num_labels, num_layers, num_groups,
                   num_width_per_group, label=None, is_test=False, no_loss=False, no_bias=1,
                   conv1_kernel=7, conv1_stride=2, final_avg_kernel=7, log=None,
                   bn_epsilon=1e-5, bn_momentum=0.9):
    if num_layers not in RESNEXT_BLOCK_CONFIG:
        raise ValueError("%d-layer is invalid for resnext config (valid: %s)"
                         % (num_layers, sorted(RESNEXT_BLOCK_CONFIG)))
    blocks = RESNEXT_BLOCK_CONFIG[num_layers]
    widths = [64, 64, 128, 256, 512] if num_layers in (18, 34) else [64, 256, 512, 1024, 2048]
    conv = brew.conv(model, data, "conv1", num_input_channels, widths[0], weight_init=_MSRA,
                     kernel=conv1_kernel, stride=conv1_stride, pad=3, no_bias=no_bias)
    bn = brew.spatial_bn(model, conv, "conv1_spatbn_relu", widths[0], epsilon=bn_epsilon,
                         momentum=bn_momentum, is_test=is_test)
    relu = brew.relu(model, bn, bn)
    pool = brew.max_pool(model, relu, "pool1", kernel=3, stride=2, pad=1)
    # the residual stages use Caffe2's fixed BN settings, whatever bn_epsilon/bn_momentum say
    builder = ResNetBuilder(model, pool, no_bias=no_bias, is_test=is_test, bn_epsilon=1e-5,
                            bn_momentum=0.9)
    inner = num_groups * num_width_per_group
    for stage in range(4):
        dim_in = widths[stage]
        for block in range(blocks[stage]):
            dim_in = builder.add_bottleneck(dim_in, inner, widths[stage + 1],
                                            stride=RESNEXT_STRIDES[stage] if block == 0 else 1,
                                            group=num_groups)
        inner *= 2
    final_avg = brew.average_pool(model, builder.prev_blob, "final_avg", kernel=final_avg_kernel,
                                  stride=1, global_pooling=True)
    last_out = brew.fc(model, final_avg, "last_out_L%d" % num_labels, widths[-1], num_labels)
    if no_loss:
        return last_out
    if label is not None:
        return model.SoftmaxWithLoss([last_out, label], ["softmax", "loss"])
    return brew.softmax(model, last_out, "softmax")


def create_resnet50(model, data, num_input_channels, num_labels, label=None, is_test=False,
                    no_loss=False, no_bias=0, conv1_kernel=7, conv1_stride=2, final_avg_kernel=7):
    return create_resnext(model, data, num_input_channels, num_labels, num_layers=50,
                          num_groups=1, num_width_per_group=64, label=label, is_test=is_test,
                          no_loss=no_loss, no_bias=no_bias, conv1_kernel=conv1_kernel,
                          conv1_stride=conv1_stride, final_avg_kernel=final_avg_kernel)
