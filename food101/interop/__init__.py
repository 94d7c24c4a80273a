"""Interop: models in and out of the project's Caffe2 runtime, one owner per format.

Modules: export (Caffe2 deploy folders and ONNX export: `to_caffe2`, `to_onnx`, `export_model`),
onnx_import (`from_onnx`: an ONNX graph -> a ZooModel of Caffe2 ops).
Arrows point one way: interop uses caffe2/ and zoo/, and nothing below it imports interop.
"""
