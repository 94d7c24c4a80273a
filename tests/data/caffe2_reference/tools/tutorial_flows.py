"""The Caffe2 tutorials' flows, one script for both runtimes, iteration by iteration.

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /work/c2venv/bin/python tutorial_flows.py OUT.json
    python tutorial_flows.py OUT.json --food101          # the same code on food101.caffe2

Only the import differs. Random fills draw differently in the two runtimes, so every flow feeds
its data and overwrites the initialised parameters with seeded numpy values; everything after
that (forward, gradients, LR policies, updates, DBs, Checkpoint, exporters, reload) must agree.
Flows: Toy_Regression (Part II), Python_Op (forward + grad_f inside training),
create_your_own_dataset (minidb of NumpyArrayToCaffe2Tensor records, TensorProtosDBInput, MLP
with build_sgd), MNIST (uint8 records -> Cast/Scale/StopGradient, LeNet-ish, Iter/LearningRate/
WeightedSum, Checkpoint, predictor_exporter save + prepare_prediction_net), CIFAR10 (mobile_exporter
of a deploy net with SpatialBN, reloaded).
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np

if "--food101" in sys.argv:
    from food101.caffe2 import brew, core, model_helper, optimizer, utils, workspace
    from food101.caffe2.predictor import mobile_exporter, predictor_exporter
    from food101.caffe2.proto import caffe2_pb2
else:
    from caffe2.proto import caffe2_pb2
    from caffe2.python import brew, core, model_helper, optimizer, utils, workspace
    from caffe2.python.predictor import mobile_exporter, predictor_exporter

RESULTS = {}
TMP = tempfile.mkdtemp(prefix="tutorial_flows_")


def seeded_params(model, seed):
    """Overwrite every initialised float parameter with seeded values (same in both runtimes)."""
    rs = np.random.RandomState(seed)
    for name in sorted(str(p) for p in model.GetAllParams()):
        value = workspace.FetchBlob(name)
        if value.dtype == np.float32:
            workspace.FeedBlob(name, (rs.randn(*value.shape) * 0.1).astype(np.float32))


def toy_regression():
    workspace.ResetWorkspace()
    init_net = core.Net("init")
    W = init_net.GivenTensorFill([], "W", shape=[1, 2], values=[-0.5, 0.3])
    B = init_net.ConstantFill([], "B", shape=[1], value=0.0)
    ONE = init_net.ConstantFill([], "ONE", shape=[1], value=1.)
    ITER = init_net.ConstantFill([], "ITER", shape=[1], value=0, dtype=core.DataType.INT64)
    W_gt = init_net.GivenTensorFill([], "W_gt", shape=[1, 2], values=[2.0, 1.5])
    B_gt = init_net.GivenTensorFill([], "B_gt", shape=[1], values=[0.5])
    train_net = core.Net("train")
    Y_gt = train_net.FC(["X", W_gt, B_gt], "Y_gt")   # the tutorial draws X with GaussianFill;
    Y_pred = train_net.FC(["X", W, B], "Y_pred")     # here it is fed, so both runtimes see it
    dist = train_net.SquaredL2Distance([Y_gt, Y_pred], "dist")
    loss = dist.AveragedLoss([], ["loss"])
    gradient_map = train_net.AddGradientOperators([loss])
    train_net.Iter(ITER, ITER)
    LR = train_net.LearningRate(ITER, "LR", base_lr=-0.1, policy="step", stepsize=20, gamma=0.9)
    train_net.WeightedSum([W, ONE, gradient_map[W], LR], W)
    train_net.WeightedSum([B, ONE, gradient_map[B], LR], B)
    workspace.RunNetOnce(init_net)
    rs = np.random.RandomState(0)
    workspace.FeedBlob("X", rs.randn(64, 2).astype(np.float32))
    workspace.CreateNet(train_net)
    losses = []
    for i in range(40):
        workspace.FeedBlob("X", rs.randn(64, 2).astype(np.float32))
        workspace.RunNet(train_net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
    RESULTS["toy_regression"] = {"loss": losses, "W": workspace.FetchBlob("W").tolist(),
                                 "B": workspace.FetchBlob("B").tolist()}


def python_op():
    workspace.ResetWorkspace()

    def scale_by_three(inputs, outputs):
        outputs[0].feed(3 * inputs[0].data)

    def scale_by_three_grad(inputs, outputs):
        outputs[0].reshape(inputs[2].shape)
        outputs[0].data[...] = 3 * inputs[2].data

    net = core.Net("python_op")
    net.Python(scale_by_three, scale_by_three_grad)(["w"], ["w3"])
    dist = net.SquaredL2Distance(["w3", "target"], "dist")
    loss = net.AveragedLoss(dist, "loss")
    grads = net.AddGradientOperators([loss])
    workspace.FeedBlob("w", np.array([[1.0, -1.0]], np.float32))
    workspace.FeedBlob("target", np.array([[6.0, 3.0]], np.float32))
    workspace.FeedBlob("lr", np.array([-0.05], np.float32))
    workspace.FeedBlob("one", np.array([1.0], np.float32))
    net.WeightedSum(["w", "one", grads["w"], "lr"], "w")
    workspace.CreateNet(net)
    losses = []
    for _ in range(10):
        workspace.RunNet(net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
    RESULTS["python_op"] = {"loss": losses, "w": workspace.FetchBlob("w").tolist()}


def create_your_own_dataset():
    workspace.ResetWorkspace()
    rs = np.random.RandomState(1)
    features = rs.rand(30, 4).astype(np.float32)
    labels = (features[:, 0] * 3).astype(int) % 3          # int64, as np.loadtxt(dtype=int)
    path = os.path.join(TMP, "iris_train.minidb")
    db = workspace.C.create_db("minidb", path, workspace.C.Mode.write)
    transaction = db.new_transaction()
    for i in range(features.shape[0]):
        record = caffe2_pb2.TensorProtos()
        record.protos.extend([utils.NumpyArrayToCaffe2Tensor(features[i]),
                              utils.NumpyArrayToCaffe2Tensor(labels[i])])
        transaction.put("train_%03d" % i, record.SerializeToString())
    del transaction
    del db
    model = model_helper.ModelHelper("iris_train")
    data, label = brew.db_input(model, blobs_out=["data", "label"], batch_size=10,
                                db=path, db_type="minidb")
    hidden = brew.relu(model, brew.fc(model, data, "fc1", dim_in=4, dim_out=8), "relu1")
    softmax = brew.softmax(model, brew.fc(model, hidden, "fc2", dim_in=8, dim_out=3), "softmax")
    xent = model.LabelCrossEntropy([softmax, label], "xent")
    loss = model.AveragedLoss(xent, "loss")
    brew.accuracy(model, [softmax, label], "accuracy")
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.5, policy="step", stepsize=1, gamma=0.999)
    workspace.RunNetOnce(model.param_init_net)
    seeded_params(model, 11)
    workspace.CreateNet(model.net, overwrite=True)
    losses, accuracy = [], []
    for _ in range(12):
        workspace.RunNet(model.net)
        losses.append(float(workspace.FetchBlob("loss")))
        accuracy.append(float(workspace.FetchBlob("accuracy")))
    RESULTS["create_your_own_dataset"] = {"loss": losses, "accuracy": accuracy,
                                          "label_dtype": str(workspace.FetchBlob("label").dtype)}


def _image_minidb(path, count, shape, seed):
    rs = np.random.RandomState(seed)
    db = workspace.C.create_db("minidb", path, workspace.C.Mode.write)
    transaction = db.new_transaction()
    for i in range(count):
        label = i % 10
        image = rs.randint(0, 128, size=shape).astype(np.uint8)
        image[:, 2 * label:2 * label + 4, :] = 255
        record = caffe2_pb2.TensorProtos()
        tensor = record.protos.add()
        tensor.dims.extend(shape)
        tensor.data_type = caffe2_pb2.TensorProto.BYTE
        tensor.byte_data = image.tobytes()
        lab = record.protos.add()
        lab.data_type = caffe2_pb2.TensorProto.INT32
        lab.int32_data.append(label)
        transaction.put("%05d" % i, record.SerializeToString())
    del transaction
    del db


def _lenet(model, data):
    conv1 = brew.conv(model, data, "conv1", dim_in=1, dim_out=6, kernel=5)
    pool1 = brew.max_pool(model, conv1, "pool1", kernel=2, stride=2)
    conv2 = brew.conv(model, pool1, "conv2", dim_in=6, dim_out=8, kernel=3)
    pool2 = brew.max_pool(model, conv2, "pool2", kernel=2, stride=2)
    fc3 = brew.relu(model, brew.fc(model, pool2, "fc3", dim_in=8 * 5 * 5, dim_out=32), "relu3")
    return brew.softmax(model, brew.fc(model, fc3, "pred", 32, 10), "softmax")


def mnist():
    workspace.ResetWorkspace(TMP)                          # relative DBs go under the root folder
    path = os.path.join(TMP, "mnist_train.minidb")
    _image_minidb(path, 40, (1, 28, 28), seed=2)
    model = model_helper.ModelHelper(name="mnist_train", arg_scope={"order": "NCHW"})
    data_uint8, label = model.TensorProtosDBInput([], ["data_uint8", "label"], batch_size=8,
                                                  db=path, db_type="minidb")
    data = model.Cast(data_uint8, "data", to=core.DataType.FLOAT)
    data = model.Scale(data, data, scale=float(1. / 256))
    data = model.StopGradient(data, data)
    softmax = _lenet(model, data)
    xent = model.LabelCrossEntropy([softmax, label], "xent")
    loss = model.AveragedLoss(xent, "loss")
    brew.accuracy(model, [softmax, label], "accuracy")
    model.AddGradientOperators([loss])
    ITER = brew.iter(model, "iter")
    LR = model.LearningRate(ITER, "LR", base_lr=-0.1, policy="step", stepsize=1, gamma=0.999)
    ONE = model.param_init_net.ConstantFill([], "ONE", shape=[1], value=1.0)
    for param in model.params:
        model.WeightedSum([param, ONE, model.param_to_grad[param], LR], param)
    model.Checkpoint([ITER] + model.params, [], db="mnist_checkpoint_%05d.minidb",
                     db_type="minidb", every=5)
    workspace.RunNetOnce(model.param_init_net)
    seeded_params(model, 12)
    workspace.CreateNet(model.net, overwrite=True)
    losses = []
    for _ in range(10):
        workspace.RunNet(model.net)
        losses.append(float(workspace.FetchBlob("loss")))
    checkpoints = sorted(f for f in os.listdir(TMP) if f.startswith("mnist_checkpoint"))

    deploy = model_helper.ModelHelper(name="mnist_deploy", arg_scope={"order": "NCHW"},
                                      init_params=False)
    _lenet(deploy, "data")
    images = (np.random.RandomState(3).randint(0, 256, (4, 1, 28, 28)) / 256.).astype(np.float32)
    workspace.FeedBlob("data", images)
    workspace.RunNetOnce(deploy.param_init_net)
    workspace.CreateNet(deploy.net, overwrite=True)
    workspace.RunNet(deploy.net)
    pe_meta = predictor_exporter.PredictorExportMeta(
        predict_net=deploy.net.Proto(), parameters=[str(b) for b in deploy.params],
        inputs=["data"], outputs=["softmax"])
    predictor_exporter.save_to_db("minidb", os.path.join(TMP, "mnist_model.minidb"), pe_meta)
    workspace.ResetWorkspace(TMP)
    predict_net = predictor_exporter.prepare_prediction_net(
        os.path.join(TMP, "mnist_model.minidb"), "minidb")
    workspace.FeedBlob("data", images)
    workspace.RunNetOnce(predict_net)
    reloaded = workspace.FetchBlob("softmax")
    workspace.ResetWorkspace(TMP)
    workspace.RunOperatorOnce(core.CreateOperator(
        "Load", [], [], db=checkpoints[-1], db_type="minidb", load_all=1))
    RESULTS["mnist"] = {"loss": losses, "checkpoints": checkpoints,
                        "reloaded_softmax": reloaded.tolist(),
                        "checkpoint_iter": int(workspace.FetchBlob("iter")[0]),
                        "checkpoint_conv1_w_sum": float(workspace.FetchBlob("conv1_w").sum())}


def cifar10():
    workspace.ResetWorkspace()
    model = model_helper.ModelHelper(name="cifar_train", arg_scope={"order": "NCHW"})
    conv1 = brew.conv(model, "data", "conv1", 3, 8, kernel=5, stride=1, pad=2)
    bn1 = brew.spatial_bn(model, conv1, "bn1", 8, is_test=False, epsilon=1e-5, momentum=0.9)
    relu1 = brew.relu(model, bn1, "relu1")
    pool1 = brew.average_pool(model, relu1, "pool1", kernel=3, stride=2)
    fc1 = brew.fc(model, pool1, "fc1", dim_in=8 * 7 * 7, dim_out=10)
    softmax = brew.softmax(model, fc1, "softmax")
    xent = model.LabelCrossEntropy([softmax, "label"], "xent")
    loss = model.AveragedLoss(xent, "loss")
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.1, policy="step", stepsize=10, gamma=0.999,
                        momentum=0.9)
    rs = np.random.RandomState(5)
    workspace.FeedBlob("data", rs.randn(6, 3, 16, 16).astype(np.float32))
    workspace.FeedBlob("label", rs.randint(0, 10, 6).astype(np.int32))
    workspace.RunNetOnce(model.param_init_net)
    seeded_params(model, 13)
    workspace.CreateNet(model.net, overwrite=True)
    losses = []
    for _ in range(8):
        workspace.FeedBlob("data", rs.randn(6, 3, 16, 16).astype(np.float32))
        workspace.RunNet(model.net)
        losses.append(float(workspace.FetchBlob("loss")))
    deploy = model_helper.ModelHelper(name="cifar_deploy", arg_scope={"order": "NCHW"},
                                      init_params=False)
    conv1 = brew.conv(deploy, "data", "conv1", 3, 8, kernel=5, stride=1, pad=2)
    bn1 = brew.spatial_bn(deploy, conv1, "bn1", 8, is_test=True, epsilon=1e-5)
    relu1 = brew.relu(deploy, bn1, "relu1")
    pool1 = brew.average_pool(deploy, relu1, "pool1", kernel=3, stride=2)
    brew.softmax(deploy, brew.fc(deploy, pool1, "fc1", dim_in=8 * 7 * 7, dim_out=10), "softmax")
    images = rs.randn(2, 3, 16, 16).astype(np.float32)
    workspace.FeedBlob("data", images)
    workspace.RunNetOnce(deploy.param_init_net)
    workspace.CreateNet(deploy.net, overwrite=True)
    workspace.RunNet(deploy.net)
    trained = workspace.FetchBlob("softmax")
    # deploy.GetAllParams(): the running statistics travel too (real Caffe2 needs them listed)
    init_net, predict_net = mobile_exporter.Export(workspace, deploy.net, deploy.GetAllParams())
    workspace.ResetWorkspace()
    workspace.RunNetOnce(init_net)
    workspace.FeedBlob("data", images)
    workspace.RunNetOnce(predict_net)
    RESULTS["cifar10"] = {"loss": losses, "deploy_softmax": trained.tolist(),
                          "reloaded_softmax": workspace.FetchBlob("softmax").tolist(),
                          "external_output": list(predict_net.external_output),
                          "init_ops": len(init_net.op)}


if __name__ == "__main__":
    try:
        for flow in (toy_regression, python_op, create_your_own_dataset, mnist, cifar10):
            flow()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    with open(sys.argv[1], "w") as fh:
        json.dump(RESULTS, fh, indent=1, sort_keys=True)
    print("wrote", sys.argv[1], sorted(RESULTS))
