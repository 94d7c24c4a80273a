"""Reference fixtures for food101's Caffe translator, made by REAL Caffe2's caffe_translator.

Run with the Python 3.7 environment that has real Caffe2 (torch 1.4.0) and grpcio-tools:

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /work/c2venv/bin/python \\
        tests/data/caffe_reference/tools/make_translator_fixtures.py ../shared/caffe_nets

For each case (SqueezeNet v1.1 and BVLC GoogLeNet deploy.prototxt) it draws random weights
(numpy RandomState(seed), layer by layer, in the order and shapes written to the JSON, so the
tests redraw the same arrays and write their own .caffemodel with the project's schema), writes
a .caffemodel with a caffe_pb2 generated from BVLC's caffe.proto, translates it with Caffe2's
TranslateModel(is_test=True), runs the nets on a seeded input and saves

    translator/<case>.json          seed, input shape, the parameter blob shapes per layer
    translator/<case>_predict.pb    real Caffe2's predict net (ops as the translator made them)
    translator/<case>_outputs.npz   the fetched blobs (final softmax and a few inside)
"""
import os

# grpcio-tools brings a protobuf newer than Caffe2's generated code accepts in C++ mode
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import json
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "translator")

CASES = {
    "squeezenet_v1_1": dict(prototxt="squeezenet_v1.1/deploy.prototxt", input=[2, 3, 67, 67],
                            seed=1801, fetch=["pool1_small", "fire9/concat_small", "conv10", "prob"]),
    "googlenet": dict(prototxt="bvlc_googlenet/deploy.prototxt", input=[1, 3, 224, 224],
                      seed=1802, fetch=["pool5/7x7_s1", "loss3/classifier", "prob"]),
}


def generated_caffe_pb2(caffe_proto):
    root = tempfile.mkdtemp(prefix="caffe_pb2_")
    os.makedirs(os.path.join(root, "caffe", "proto"))
    for d in ("caffe", os.path.join("caffe", "proto")):
        open(os.path.join(root, d, "__init__.py"), "w").close()
    with open(caffe_proto) as src, open(os.path.join(root, "caffe", "proto", "caffe.proto"), "w") as dst:
        dst.write(src.read())
    subprocess.check_call([sys.executable, "-m", "grpc_tools.protoc", "-I" + root,
                           "--python_out=" + root, os.path.join(root, "caffe", "proto", "caffe.proto")])
    sys.path.insert(0, root)
    from caffe.proto import caffe_pb2
    return caffe_pb2


def blob_shapes(net, input_shape):
    """Caffe's parameter blob shapes for the deploy layers, by walking blob shapes."""
    shapes = {}
    params = []
    for layer in net.layer:
        if layer.type == "Input":
            shapes[layer.top[0]] = list(input_shape)
            continue
        x = shapes[layer.bottom[0]]
        if layer.type == "Convolution":
            p = layer.convolution_param
            k = p.kernel_size[0]
            s = p.stride[0] if p.stride else 1
            pad = p.pad[0] if p.pad else 0
            w = [p.num_output, x[1] // p.group, k, k]
            params.append((layer.name, [w, [p.num_output]] if p.bias_term else [w]))
            out = [x[0], p.num_output] + [(d + 2 * pad - k) // s + 1 for d in x[2:]]
        elif layer.type == "Pooling":
            p = layer.pooling_param
            if p.global_pooling:
                out = x[:2] + [1, 1]
            else:
                out = x[:2] + [int(np.ceil((d + 2 * p.pad - p.kernel_size) / float(p.stride))) + 1
                               for d in x[2:]]
        elif layer.type == "InnerProduct":
            p = layer.inner_product_param
            features = int(np.prod(x[1:]))
            params.append((layer.name, [[p.num_output, features], [p.num_output]]))
            out = [x[0], p.num_output]
        elif layer.type == "Concat":
            xs = [shapes[b] for b in layer.bottom]
            out = [x[0], sum(s[1] for s in xs)] + x[2:]
        else:
            out = list(x)
        for top in layer.top:
            shapes[top] = out
    return params


def draw(seed, params):
    """The random weights: He-scaled Gaussians for weights, small Gaussians for biases."""
    rng = np.random.RandomState(seed)
    weights = {}
    for name, shapes in params:
        arrays = []
        for shape in shapes:
            if len(shape) > 1:
                fan_in = int(np.prod(shape[1:]))
                arrays.append((rng.randn(*shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
            else:
                arrays.append((rng.randn(*shape) * 0.05).astype(np.float32))
        weights[name] = arrays
    return weights


def main(nets_dir):
    caffe_pb2 = generated_caffe_pb2(os.path.join(nets_dir, "caffe.proto"))
    from google.protobuf import text_format
    from caffe2.python import caffe_translator, workspace
    os.makedirs(OUT, exist_ok=True)
    for case, spec in CASES.items():
        net = caffe_pb2.NetParameter()
        with open(os.path.join(nets_dir, spec["prototxt"])) as f:
            text_format.Merge(f.read(), net)
        params = blob_shapes(net, spec["input"])
        weights = draw(spec["seed"], params)
        model = caffe_pb2.NetParameter(name=net.name)
        for name, arrays in weights.items():
            layer = model.layer.add(name=name)
            for a in arrays:
                blob = layer.blobs.add()
                blob.shape.dim.extend(a.shape)
                blob.data.extend(a.ravel().tolist())
        predict, tensors = caffe_translator.TranslateModel(net, model, is_test=True,
                                                           input_dims=spec["input"])
        data = predict.op[0].input[0]
        predict.external_input.extend([data] + [t.name for t in tensors.protos])
        predict.external_output.extend([predict.op[-1].output[0]])
        init = caffe_translator.ConvertTensorProtosToInitNet(tensors, data)
        workspace.ResetWorkspace()
        workspace.RunNetOnce(init)
        x = np.random.RandomState(spec["seed"] + 1).randn(*spec["input"]).astype(np.float32)
        workspace.FeedBlob(data, x)
        workspace.RunNetOnce(predict)
        outputs = {}
        for blob in spec["fetch"]:
            if blob.endswith("_small"):  # a corner of a big blob keeps the fixture small
                outputs[blob] = workspace.FetchBlob(blob[:-len("_small")])[:, :8, :4, :4]
            else:
                outputs[blob] = workspace.FetchBlob(blob)
        np.savez_compressed(os.path.join(OUT, case + "_outputs.npz"),
                            **{k.replace("/", "|"): v for k, v in outputs.items()})
        with open(os.path.join(OUT, case + "_predict.pb"), "wb") as f:
            f.write(predict.SerializeToString())
        with open(os.path.join(OUT, case + ".json"), "w") as f:
            json.dump({"prototxt": spec["prototxt"], "seed": spec["seed"], "input": spec["input"],
                       "params": params, "input_blob": data,
                       "made_by": "real Caffe2 %s caffe_translator.TranslateModel(is_test=True)"
                                  % __import__("caffe2").__file__.split("/site-packages")[0]},
                      f, indent=1)
        print(case, len(predict.op), "ops", {k: v.shape for k, v in outputs.items()})


if __name__ == "__main__":
    main(sys.argv[1])
