"""Caffe -> Caffe2 model translation, with the entry points of Caffe2's caffe_translator.py.

    from food101.caffe2 import caffe_translator
    net, params = caffe_translator.TranslateModel(caffe_net, pretrained_net, is_test=True)
    init_net = caffe_translator.ConvertTensorProtosToInitNet(params, net.op[0].input[0])

    python -m food101.caffe2.caffe_translator deploy.prototxt weights.caffemodel \\
        --init_net init_net.pb --predict_net predict_net.pb

`caffe_net` / `pretrained_net` are `caffe_pb2.NetParameter` messages of the project's Caffe
schema (`caffe_pb2` here; `read_net` / `read_caffemodel` read files). The implementation (one
converter per Caffe layer type) is food101.interop.caffe; this module is its Caffe2-named face.
"""
import sys

from food101.interop.caffe import caffe_pb2  # noqa: F401  (as Caffe2's `from caffe.proto import caffe_pb2`)
from food101.interop.caffe.caffe2_api import (  # noqa: F401
    ConvertTensorProtosToInitNet, TranslateModel, TranslatorRegistry, main, remove_legacy_padding,
)
from food101.interop.caffe.netfile import read_caffemodel, read_net  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
