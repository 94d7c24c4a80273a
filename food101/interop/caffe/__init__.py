"""Caffe models in the project: the Caffe schema (caffe_pb2), file reading (netfile), the layer
converters (translator), Caffe2's caffe_translator API (caffe2_api) and solver files (solver)."""
