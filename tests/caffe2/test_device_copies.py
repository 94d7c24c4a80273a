"""core.InjectCrossDeviceCopies: the copies Caffe2 inserts between devices (building only; no
GPU is needed to build a net that would run on one)."""
from food101.caffe2 import core
from food101.caffe2.proto import caffe2_pb2

GPU0 = core.DeviceOption(caffe2_pb2.CUDA, 0)
GPU1 = core.DeviceOption(caffe2_pb2.CUDA, 1)


def test_cpu_only_nets_come_back_unchanged_whatever_the_node_names():
    net = core.Net("cpu_only")
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU, node_name="node:0")):
        net.FC(["data", "w", "b"], "fc")
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU, node_name="node:1")):
        net.Relu("fc", "out")
    new_net, devices = core.InjectCrossDeviceCopies(net)
    assert [op.type for op in new_net.Proto().op] == ["FC", "Relu"]
    assert new_net.Proto().op[1].input[0] == "fc"
    assert devices["out"].device_type == caffe2_pb2.CPU


def test_copies_between_cpu_and_gpus_are_inserted_once_and_reused():
    net = core.Net("mixed")
    net.Proto().external_input.extend(["data"])
    with core.DeviceScope(GPU0):
        net.Relu("data", "a")
        net.Sigmoid("data", "a2")         # reuses data_gpu_0
    with core.DeviceScope(GPU1):
        net.Relu("a", "b")
    net.Relu("b", "c")                    # back on the CPU
    new_net, devices = core.InjectCrossDeviceCopies(net)
    ops = [(op.type, list(op.input), list(op.output)) for op in new_net.Proto().op]
    assert ops == [
        ("CopyCPUToGPU", ["data"], ["data_gpu_0"]), ("Relu", ["data_gpu_0"], ["a"]),
        ("Sigmoid", ["data_gpu_0"], ["a2"]),
        ("Copy", ["a"], ["a_gpu_1"]), ("Relu", ["a_gpu_1"], ["b"]),
        ("CopyGPUToCPU", ["b"], ["b_cpu"]), ("Relu", ["b_cpu"], ["c"]),
    ]
    assert new_net.Proto().op[3].device_option.device_id == 1
    assert devices["b"].device_id == 1 and devices["c"].device_type == caffe2_pb2.CPU


def test_run_all_on_gpu_reaches_recurrent_step_nets():
    step = caffe2_pb2.NetDef(name="step")
    net = core.Net("rnn_holder")
    net.Proto().op.add(type="RecurrentNetwork").arg.add(name="step_net").n.CopyFrom(step)
    net.RunAllOnGPU(gpu_id=3, use_cudnn=True)
    inner = net.Proto().op[0].arg[0].n
    assert net.Proto().device_option.device_id == 3 and inner.device_option.device_id == 3
