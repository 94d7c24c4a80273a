"""Writes the notebooks from the cell sources below (outputs empty: CI executes them).

    python notebooks/make_notebooks.py      # after editing a cell here
Keeping the sources in one Python file makes notebook diffs reviewable.
"""
import os

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))


def notebook(cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in cells:
        source = source.strip("\n")
        nb.cells.append(nbformat.v4.new_markdown_cell(source) if kind == "md"
                        else nbformat.v4.new_code_cell(source))
    return nb


CAFFE2_API = [
    ("md", """
# Classic Caffe2 code, one changed import

This is the shape of the Caffe2 MNIST tutorial: a `ModelHelper`, `brew` layers, gradient
operators, an `Iter` + `LearningRate` + `WeightedSum` update with Caffe2's negative learning
rate, and a `workspace` loop with `FetchBlob`. The only change from Caffe2 is the import line:

```python
# from caffe2.python import core, workspace, model_helper, brew   # before
from food101.caffe2 import core, workspace, model_helper, brew     # after
```
"""),
    ("code", """
import numpy as np
from food101.caffe2 import core, workspace, model_helper, brew

workspace.ResetWorkspace()
rs = np.random.RandomState(3)
# A learnable toy task: 10 classes, each brightens its own patch of a 28x28 uint8 image.
batches = []
for _ in range(3):
    images = rs.randint(0, 256, (16, 1, 28, 28)).astype(np.uint8)
    labels = rs.randint(0, 10, 16).astype(np.int32)
    for i, label in enumerate(labels):
        images[i, 0, 2 * label:2 * label + 6, 4:10] = 255
    batches.append((images, labels))
"""),
    ("code", """
model = model_helper.ModelHelper(name="mnist_like", arg_scope={"order": "NCHW"})
model.net.AddExternalInput("data_uint8", "label")
model.net.Cast(["data_uint8"], "data_f", to=core.DataType.FLOAT)
model.net.Scale("data_f", "data_s", scale=float(1. / 256))
data = model.net.StopGradient("data_s", "data")
conv1 = brew.conv(model, data, "conv1", dim_in=1, dim_out=8, kernel=5)
pool1 = brew.max_pool(model, conv1, "pool1", kernel=2, stride=2)
relu1 = brew.relu(model, pool1, "relu1")
fc1 = brew.fc(model, relu1, "fc1", dim_in=8 * 12 * 12, dim_out=10)
softmax = brew.softmax(model, fc1, "softmax")
xent = model.net.LabelCrossEntropy([softmax, "label"], "xent")
loss = model.net.AveragedLoss(xent, "loss")
brew.accuracy(model, [softmax, "label"], "accuracy")
model.AddGradientOperators([loss])
ITER = brew.iter(model, "iter")
LR = model.net.LearningRate(ITER, "LR", base_lr=-0.1, policy="step", stepsize=1, gamma=0.999)
ONE = model.param_init_net.ConstantFill([], "ONE", shape=[1], value=1.0)
for param in model.params:
    model.net.WeightedSum([param, ONE, model.param_to_grad[param], LR], param)
print("params:", [str(p) for p in model.params])
print("ops in the training net:", [op.type for op in model.net.Proto().op])
"""),
    ("md", """
The gradient part is one `AutogradGradient` op: torch autograd computes every `<blob>_grad`
that Caffe2's per-op gradient operators would have written, with the same names.
"""),
    ("code", """
workspace.RunNetOnce(model.param_init_net)
workspace.FeedBlob("data_uint8", batches[0][0])
workspace.FeedBlob("label", batches[0][1])
workspace.CreateNet(model.net)
losses, accuracies = [], []
for i in range(60):
    images, labels = batches[i % 3]
    workspace.FeedBlob("data_uint8", images)
    workspace.FeedBlob("label", labels)
    workspace.RunNet(model.net.Proto().name)
    losses.append(float(workspace.FetchBlob("loss")))
    accuracies.append(float(workspace.FetchBlob("accuracy")))
print("loss %.3f -> %.3f, accuracy %.2f -> %.2f" % (losses[0], losses[-1], accuracies[0], accuracies[-1]))
print("conv1_w_grad shape:", workspace.FetchBlob("conv1_w_grad").shape)
assert losses[-1] < losses[0]
"""),
    ("code", """
%matplotlib inline
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(losses, label="loss")
ax.plot(accuracies, label="accuracy")
ax.set_xlabel("iteration")
ax.legend()
plt.show()
"""),
    ("md", """
## Save and reload the trained model, the Caffe2 way

A deploy net (no loss, `init_params=False`: the trained blobs are already in the workspace)
goes to the Model Zoo's two files with `mobile_exporter.Export`, and to one `minidb` file with
`predictor_exporter`. Both are the formats real Caffe2 writes and reads (the tests check the
bytes against files real Caffe2 wrote). Reloaded in a fresh workspace, the model gives the
same softmax.
"""),
    ("code", """
import os, tempfile
from food101.caffe2.predictor import mobile_exporter, predictor_exporter

deploy = model_helper.ModelHelper(name="mnist_deploy", arg_scope={"order": "NCHW"}, init_params=False)
conv1 = brew.conv(deploy, "data", "conv1", dim_in=1, dim_out=8, kernel=5)
pool1 = brew.max_pool(deploy, conv1, "pool1", kernel=2, stride=2)
relu1 = brew.relu(deploy, pool1, "relu1")
fc1 = brew.fc(deploy, relu1, "fc1", dim_in=8 * 12 * 12, dim_out=10)
brew.softmax(deploy, fc1, "softmax")

test_images = (batches[0][0] / 256.0).astype(np.float32)
workspace.FeedBlob("data", test_images)
workspace.RunNetOnce(deploy.net)
before = workspace.FetchBlob("softmax")

init_net, predict_net = mobile_exporter.Export(workspace, deploy.net, deploy.params)
out_dir = tempfile.mkdtemp(prefix="mnist_export_")
for name, net in (("init_net.pb", init_net), ("predict_net.pb", predict_net)):
    with open(os.path.join(out_dir, name), "wb") as fh:
        fh.write(net.SerializeToString())
print("init_net ops:", [op.type for op in init_net.op][:3], "...", len(init_net.op))
print("predict_net inputs:", list(predict_net.external_input)[:3], "outputs:", list(predict_net.external_output))

meta = predictor_exporter.PredictorExportMeta(predict_net=deploy.net.Proto(), parameters=deploy.params,
                                              inputs=["data"], outputs=["softmax"])
predictor_exporter.save_to_db("minidb", os.path.join(out_dir, "mnist.minidb"), meta)
print(sorted(os.listdir(out_dir)))
"""),
    ("code", """
from food101.caffe2.proto import load_net
workspace.ResetWorkspace()                           # nothing left from training
workspace.RunNetOnce(load_net(os.path.join(out_dir, "init_net.pb")))
workspace.FeedBlob("data", test_images)
workspace.RunNetOnce(load_net(os.path.join(out_dir, "predict_net.pb")))
mobile = workspace.FetchBlob("softmax")

workspace.ResetWorkspace()
net = predictor_exporter.prepare_prediction_net(os.path.join(out_dir, "mnist.minidb"), "minidb")
workspace.FeedBlob("data", test_images)
workspace.RunNet(net)
minidb = workspace.FetchBlob("softmax")
print("largest difference after reload: mobile %.2g, minidb %.2g"
      % (np.abs(mobile - before).max(), np.abs(minidb - before).max()))
assert np.array_equal(mobile, before) and np.array_equal(minidb, before)
"""),
    ("md", """
## Model Zoo nets load as they are

`predict_net.pb` / `init_net.pb` from the Caffe2 Model Zoo run unchanged. Here the seeded
stand-in SqueezeNet shipped in `models/squeezenet_standin` (real Caffe2 wrote it, with the zoo's
topology); `tools/download_model.py squeezenet` fetches the pretrained files.
"""),
    ("code", """
from food101.caffe2.proto import load_net
import os
root = os.path.join("..", "models", "squeezenet_standin")
init_net = load_net(os.path.join(root, "init_net.pb"))
predict_net = load_net(os.path.join(root, "predict_net.pb"))
workspace.ResetWorkspace()
workspace.RunNetOnce(init_net)
workspace.FeedBlob("data", (np.random.RandomState(0).rand(1, 3, 227, 227) * 255 - 117).astype(np.float32))
workspace.RunNetOnce(predict_net)
probs = workspace.FetchBlob("softmaxout")
print("softmaxout", probs.shape, "sums to", float(probs.sum()))
print("pool3", workspace.FetchBlob("pool3").shape, "pool5", workspace.FetchBlob("pool5").shape)
"""),
]

QUICKSTART = [
    ("md", """
# Quick start: fine-tune the Model Zoo SqueezeNet on Food-101 (demo data)

The same journey as `make demo`, through `import food101`: demo images in Food-101 layout ->
LMDBs of TensorProtos -> the zoo SqueezeNet -> a new classifier -> fine-tuning -> evaluation ->
Caffe2 and ONNX export -> predictions. With the real dataset and `tools/download_model.py`,
only the paths change.
"""),
    ("code", """
import os, json
import food101
from food101 import zoo, data, train, export
from food101.walkthrough import prepare_data, STANDIN_NOTICE

workdir = os.path.abspath("quickstart_run")
root, lmdbs = prepare_data(workdir)
location = zoo.locate_squeezenet()
model = location.load()
print(model)
if location.is_standin:
    print(STANDIN_NOTICE)
"""),
    ("code", """
classes = data.Food101Layout(root).classes
food = zoo.replace_classifier(model, num_classes=len(classes), class_names=classes)
print("new classifier:", food.output_name, food.param_shapes["conv10_w"])
"""),
    ("code", """
result = train.fine_tune(overrides={
    "data.train_lmdb": lmdbs["train"], "data.test_lmdb": lmdbs["test"],
    "data.batch_size": 16, "data.crop_size": 56, "data.test_batch_size": 48,
    "model.zoo_dir": location.folder, "model.num_classes": len(classes),
    "model.unfreeze_from": "conv1",  # the stand-in's features are random: train every layer
    "solver.base_lr": 0.0005, "solver.max_iter": 100, "solver.test_interval": 50,
    "solver.display": 20, "solver.snapshot": 60, "solver.random_seed": 1,
    "train.output_dir": os.path.join(workdir, "run"), "train.progress": False,
    "train.overwrite": True,  # re-running the notebook replaces its own earlier run
})
print("top-1 %.3f, top-5 %.3f (chance %.3f)" % (result["top1"], result["top5"], 1 / len(classes)))
"""),
    ("code", """
from IPython.display import Image, display
for name, path in sorted(result["plots"].items()):
    print(name)
    display(Image(filename=path, width=480))
"""),
    ("code", """
deployed = zoo.load(result["deploy_dir"])
onnx_model = export.to_onnx(deployed, os.path.join(workdir, "food_demo.onnx"), weights=deployed.weights())
print("ONNX opset", onnx_model.opset_import[0].version, "->", os.path.join(workdir, "food_demo.onnx"))
layout = data.Food101Layout(root)
images = [item.path for item in layout.items("test")][::10][:4]
for path, top in train.predict(result["deploy_dir"], images):
    print(os.path.basename(os.path.dirname(path)), "->", ", ".join("%s %.2f" % t for t in top[:3]))
"""),
]

if __name__ == "__main__":
    for filename, cells in (("01_quickstart.ipynb", QUICKSTART), ("02_caffe2_api.ipynb", CAFFE2_API)):
        nbformat.write(notebook(cells), os.path.join(HERE, filename))
        print("wrote", os.path.join(HERE, filename))
