"""Cross-device copies: core.InjectCrossDeviceCopies and InjectDeviceCopiesAmongNets.

Given a net whose ops have different device options, build a copy of it in which every input
that lives on another device than the op reading it is first copied there (CopyCPUToGPU,
CopyGPUToCPU or Copy between GPUs), to `<blob>_gpu_<id>` / `<blob>_cpu`; a blob already copied
to that device (`blob_remap`) is reused. Devices compare by type and id only (node names and
seeds do not make a copy), so a CPU-only net comes back unchanged. Every blob sits on the device
of the op that writes it (`core.InferOpBlobDevices`); placeholder ops (`placeHolderOps`, fake
send/recv ops without schema) take their own device for their blobs, and their outputs that
were on a GPU get a `_cpu` name.
"""
from collections import defaultdict

from food101.caffe2 import core
from food101.caffe2.proto import caffe2_pb2


class RemapEntry:
    """Key of blob_remap: a blob and the device it was copied to."""

    def __init__(self, blob, device):
        self.blob, self.device = blob, device

    def __eq__(self, other):
        return self.blob == other.blob and self.device == other.device

    def __hash__(self):
        return hash(self.blob + str(self.device))


def device_equal(src, dst):
    return src.device_type == dst.device_type and src.device_id == dst.device_id


def _copy_op(src, dst, blob, new_name):
    """The OperatorDef moving `blob` from device src to dst (None: same device)."""
    src_gpu, dst_gpu = core.IsGPUDeviceType(src.device_type), core.IsGPUDeviceType(dst.device_type)
    if not src_gpu and not dst_gpu:
        return None
    if src_gpu and dst_gpu:
        if src.device_id == dst.device_id:
            return None
        op_type, device = "Copy", dst
    elif src_gpu:
        op_type, device = "CopyGPUToCPU", src
    else:
        op_type, device = "CopyCPUToGPU", dst
    return core.CreateOperator(op_type, [blob], [new_name], device_option=device)


def _name_on(blob, device):
    if device.device_type == caffe2_pb2.CPU:
        return blob + "_cpu"
    if core.IsGPUDeviceType(device.device_type):
        return "%s_gpu_%d" % (blob, device.device_id)
    raise RuntimeError("Unknown device type: {}".format(device.device_type))


def InjectCrossDeviceCopies(net, blob_to_device=None, blob_remap=None, placeHolderOps=None):
    """(new net with copies, {blob: DeviceOption}); see the module docstring.

    blob_to_device: where blobs are before the net runs (external inputs not in it are on the
    net's device); blob_remap: {RemapEntry(blob, device): copied name} from earlier nets."""
    new_net = net.Clone(net.Name() + "_cross_device", keep_schema=True)
    proto = new_net.Proto()
    del proto.op[:]
    blob_to_device = {} if blob_to_device is None else blob_to_device
    blob_remap = {} if blob_remap is None else blob_remap
    net_option = net.Proto().device_option or caffe2_pb2.DeviceOption()
    remaps = defaultdict(list)
    for entry, mapped in blob_remap.items():
        remaps[entry.blob].append(mapped)
    proto.external_input.extend([m for b in list(proto.external_input) for m in remaps[b]])
    placeholders = set(placeHolderOps or ())
    new_ops = []
    for op in net.Proto().op:
        in_devs, out_devs = (core.InferOpDeviceAsBlobDevices(op) if op.type in placeholders
                             else core.InferOpBlobDevices(op))
        renamed = {}
        for dev, name in zip(in_devs, op.input):
            assert net.BlobIsDefined(name), "input {} should be defined in the net.".format(name)
            if name not in blob_to_device:
                if name not in net.Proto().external_input:
                    raise AttributeError("No device information found for blob {}.".format(name))
                blob_to_device[name] = net_option
            if device_equal(blob_to_device[name], dev):
                continue
            key = RemapEntry(name, dev)
            if key in blob_remap and blob_to_device[blob_remap[key]] == dev:
                renamed[name] = blob_remap[key]
                continue
            new_name = _name_on(name, dev)
            copy = _copy_op(blob_to_device[name], dev, name, new_name)
            if copy is None:  # two CPU options that differ only in device_id: one device
                continue
            new_ops.append(copy)
            blob_remap[key] = renamed[name] = new_name
            blob_to_device[new_name] = dev
        new_op = caffe2_pb2.OperatorDef()
        new_op.CopyFrom(op)
        if op.type in placeholders:  # fake send/recv ops run on CPU
            outputs = [o + "_cpu" if o in blob_to_device
                       and blob_to_device[o].device_type != caffe2_pb2.CPU else o
                       for o in new_op.output]
            del new_op.output[:]
            new_op.output.extend(outputs)
        for dev, name in zip(out_devs, op.output):
            if name in blob_to_device and name not in op.input and \
                    not device_equal(blob_to_device[name], dev):
                raise RuntimeError(
                    "In-place blob: {} is not supported between operators with different device "
                    "option previous:{} now: {}. Failed op:\n {}".format(
                        name, blob_to_device[name], dev, op))
        inputs = [renamed.get(b, b) for b in new_op.input]
        del new_op.input[:]
        new_op.input.extend(inputs)
        for i, name in enumerate(new_op.output):  # in-place ops stay in place
            if name in op.input:
                new_op.output[i] = new_op.input[list(op.input).index(name)]
        blob_to_device.update({o: d for d, o in zip(out_devs, new_op.output)})
        new_ops.append(new_op)
    new_net._ExtendOps(new_ops)
    return new_net, blob_to_device


def InjectDeviceCopiesAmongNets(nets, blob_to_device_init=None):
    """InjectCrossDeviceCopies over nets given in execution order, sharing what was copied."""
    assert isinstance(nets, list) and all(isinstance(n, core.Net) for n in nets), (
        "nets {} should be a list of nets.".format(nets))
    blob_to_device = blob_to_device_init or {}
    blob_remap = {}
    new_nets = []
    for net in nets:
        new_net, blob_to_device = InjectCrossDeviceCopies(net, blob_to_device, blob_remap)
        new_nets.append(new_net)
    return new_nets, blob_to_device


def InjectDeviceCopiesAmongNetsWithoutB2D(nets, blob_to_device_init=None):
    return InjectDeviceCopiesAmongNets(nets, blob_to_device_init)[0]
