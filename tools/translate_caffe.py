#!/usr/bin/env python
"""Translate a Caffe model (deploy.prototxt + .caffemodel) into a Caffe2 Model Zoo pair, as
Caffe2's caffe_translator.py does (same arguments; also `python -m food101.caffe2.caffe_translator`).

    python tools/translate_caffe.py deploy.prototxt weights.caffemodel \\
        --init_net init_net.pb --predict_net predict_net.pb [--remove_legacy_pad --input_dims 1 3 227 227]

Unknown layer types or fields are refused (or, for a Caffe fork's transform_param fields,
ignored with a warning) with a message naming the layer and the field.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from food101.interop.caffe.caffe2_api import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
