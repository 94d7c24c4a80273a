"""Interop: models in and out of the project's Caffe2 runtime, one owner per format.

Modules: deploy (the Caffe2 deploy folder and its ModelMetadata: `write_deploy`, `to_caffe2`,
`read_metadata`), onnx_export (`to_onnx`, `verify_onnx`: converters in the ONNX_EXPORT table),
converters (the `@converter` table every direction registers into), onnx_import (`from_onnx`:
an ONNX graph -> a ZooModel of Caffe2 ops), export (`export_model` for tools/export.py and the
`food101.export` names).
Arrows point one way: interop uses caffe2/ and zoo/, and nothing below it imports interop.
"""
