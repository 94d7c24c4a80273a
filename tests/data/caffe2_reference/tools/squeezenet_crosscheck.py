"""Cross-check: the stand-in zoo SqueezeNet fine-tuned here, exported with mobile_exporter and
predictor_exporter, must give real Caffe2 the softmax it gives this runtime (within 1e-5).

Two halves, one file, run by the two Pythons:

    python squeezenet_crosscheck.py export OUTDIR      # food101 (this project's venv)
        fine-tunes tests/data/caffe2_reference/zoo/squeezenet for ITERATIONS SGD steps on
        seeded random 6-class data, writes OUTDIR/{mobile_init.pb, mobile_predict.pb,
        predictor.minidb} and OUTDIR/food101_softmax.npz
    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /work/c2venv/bin/python \\
        squeezenet_crosscheck.py predict OUTDIR         # real Caffe2 (torch 1.4.0, py3.7)
        loads both exports, runs them on the same batch, writes OUTDIR/real_caffe2_softmax.npz

The committed fixture ../serialization/squeezenet_real_softmax.npz is that last file;
tests/caffe2/test_squeezenet_export.py re-runs the export half and compares.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ZOO = os.path.join(os.path.dirname(HERE), "zoo", "squeezenet")
NUM_CLASSES = 6
ITERATIONS = 2
BATCH = 2
SIZE = 227


def batch(seed):
    """Seeded float images around the zoo's input range (numpy's RandomState is stable)."""
    rs = np.random.RandomState(seed)
    images = (rs.rand(BATCH, 3, SIZE, SIZE).astype(np.float32) - 0.5) * 8.0
    labels = rs.randint(0, NUM_CLASSES, size=BATCH).astype(np.int32)
    return images, labels


def export(out):
    from food101 import zoo
    from food101.caffe2 import workspace
    from food101.caffe2.predictor import mobile_exporter, predictor_exporter

    os.makedirs(out, exist_ok=True)
    workspace.ResetWorkspace()
    workspace.seed(14)
    standin = zoo.load(ZOO)
    train = zoo.build_finetune_model(standin, num_classes=NUM_CLASSES, input_kind="float",
                                     train_dropout=False, unfreeze_from="fire9")
    zoo.build_finetune_sgd(train, base_learning_rate=0.001, policy="fixed", momentum=0.9)
    workspace.RunNetOnce(train.param_init_net)
    for step in range(ITERATIONS):
        images, labels = batch(100 + step)
        workspace.FeedBlob("data", images)
        workspace.FeedBlob("label", labels)
        if step == 0:
            workspace.CreateNet(train.net)
        workspace.RunNet(train.net)
    deploy = zoo.build_finetune_model(standin, num_classes=NUM_CLASSES, input_kind="float",
                                      is_test=True, param_model=train, with_loss=False,
                                      name="squeezenet_food")
    netdef = deploy.net.Proto()
    written = {o for op in netdef.op for o in op.output}
    params = [b for op in netdef.op for b in op.input
              if b not in written and b != "data"]
    params = list(dict.fromkeys(params))
    init_net, predict_net = mobile_exporter.Export(workspace, deploy.net, params)
    with open(os.path.join(out, "mobile_init.pb"), "wb") as fh:
        fh.write(init_net.SerializeToString())
    with open(os.path.join(out, "mobile_predict.pb"), "wb") as fh:
        fh.write(predict_net.SerializeToString())
    output = deploy.finetune.output_blob
    images, _ = batch(7)
    meta = predictor_exporter.PredictorExportMeta(
        predict_net=deploy.net.Proto(), parameters=params, inputs=["data"], outputs=[output],
        shapes={"data": images.shape, output: (BATCH, NUM_CLASSES, 1, 1)})
    predictor_exporter.save_to_db("minidb", os.path.join(out, "predictor.minidb"), meta)
    workspace.FeedBlob("data", images)
    workspace.RunNetOnce(deploy.net)
    softmax = workspace.FetchBlob(output)
    np.savez(os.path.join(out, "food101_softmax.npz"), softmax=softmax, output=output)
    return softmax, output


def predict(out):
    from caffe2.python import workspace
    from caffe2.python.predictor import predictor_exporter
    from caffe2.proto import caffe2_pb2

    images, _ = batch(7)
    output = str(np.load(os.path.join(out, "food101_softmax.npz"))["output"])
    nets = []
    for name in ("mobile_init.pb", "mobile_predict.pb"):
        net = caffe2_pb2.NetDef()
        with open(os.path.join(out, name), "rb") as fh:
            net.ParseFromString(fh.read())
        nets.append(net)
    predictor = workspace.Predictor(nets[0].SerializeToString(), nets[1].SerializeToString())
    # external_output also lists Concat's split_info blobs (nothing reads them), as in Caffe2
    mobile = predictor.run([images])[list(nets[1].external_output).index(output)]
    workspace.ResetWorkspace()
    net = predictor_exporter.prepare_prediction_net(os.path.join(out, "predictor.minidb"), "minidb")
    workspace.FeedBlob("data", images)
    workspace.RunNet(net)
    exported = workspace.FetchBlob(output)
    np.savez(os.path.join(out, "real_caffe2_softmax.npz"), mobile=mobile, predictor=exported)
    print("real Caffe2: mobile and predictor exports agree within %.2g" % np.abs(mobile - exported).max())


if __name__ == "__main__":
    mode, folder = sys.argv[1], sys.argv[2]
    {"export": export, "predict": predict}[mode](folder)
