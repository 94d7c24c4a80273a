"""Caffe2's protobuf schema (caffe2.proto, package ``caffe2``, proto2), wire-compatible.

The schema lives here as a table in .proto syntax, turned into message classes in a private
descriptor pool at import (`food101.caffe2.proto.schema` says why: no generated code that pins a
protobuf runtime, no clash with another ``caffe2.*``). The result behaves like Caffe2's own
``caffe2_pb2``::

    net = caffe2_pb2.NetDef(name="squeezenet")
    t = caffe2_pb2.TensorProto(data_type=caffe2_pb2.TensorProto.BYTE)
    opt = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA, device_id=0)

Field names, numbers, labels, packing and defaults follow Caffe2's caffe2.proto (the version
shipped with PyTorch 1.4 and later, a superset of older ones: ``DeviceOption.device_id`` is
field 2, formerly ``cuda_gpu_id``). Fields a file uses that are not listed here are kept as
unknown fields, so parse -> serialize still gives the same bytes.
"""
from food101.caffe2.proto import schema

PACKAGE = "caffe2"
FILE_NAME = "food101/caffe2/proto/caffe2.proto"

# Enums: "Message.Enum" for nested ones, a bare name for file-level ones.
_ENUMS = {
    "TensorProto.DataType": [
        ("UNDEFINED", 0), ("FLOAT", 1), ("INT32", 2), ("BYTE", 3), ("STRING", 4), ("BOOL", 5),
        ("UINT8", 6), ("INT8", 7), ("UINT16", 8), ("INT16", 9), ("INT64", 10), ("FLOAT16", 12),
        ("DOUBLE", 13), ("ZERO_COLLISION_HASH", 14), ("REBATCHING_BUFFER", 15),
    ],
    "TensorProto.SerializationFormat": [("FMT_PROTOBUF", 0), ("FMT_BFLOAT16", 1)],
    "TensorBoundShape.DimType": [
        ("UNKNOWN", 0), ("CONSTANT", 1), ("BATCH", 2), ("BATCH_OF_FEATURE_MAX", 3),
        ("BATCH_OF_FEATURE_MAX_DEFAULT", 4), ("FEATURE_MAX", 5), ("FEATURE_MAX_DEFAULT", 6),
    ],
    "DeviceTypeProto": [
        ("PROTO_CPU", 0), ("PROTO_CUDA", 1), ("PROTO_MKLDNN", 2), ("PROTO_OPENGL", 3),
        ("PROTO_OPENCL", 4), ("PROTO_IDEEP", 5), ("PROTO_HIP", 6), ("PROTO_FPGA", 7),
        ("PROTO_MSNPU", 8), ("PROTO_XLA", 9), ("PROTO_MLC", 10), ("PROTO_ORT", 11),
        ("PROTO_COMPILE_TIME_MAX_DEVICE_TYPES", 12),
    ],
}

# Messages, in the order of caffe2.proto; "Outer.Inner" declares a nested message.
# One field per line: label type name = number [options], as in the .proto file.
_MESSAGES = {
    "TensorProto": """
        repeated int64 dims = 1
        optional TensorProto.DataType data_type = 2 [default = FLOAT]
        optional uint32 data_format = 15 [default = 0]
        repeated float float_data = 3 [packed = true]
        repeated int32 int32_data = 4 [packed = true]
        optional bytes byte_data = 5
        repeated bytes string_data = 6
        repeated double double_data = 9 [packed = true]
        repeated int64 int64_data = 10 [packed = true]
        optional bytes raw_data = 13
        optional string name = 7
        optional DeviceOption device_detail = 8
        optional TensorProto.Segment segment = 11
    """,
    "TensorProto.Segment": """
        required int64 begin = 1
        required int64 end = 2
    """,
    "QTensorProto": """
        repeated int64 dims = 1
        required int32 precision = 2
        required double scale = 3
        required double bias = 4
        required bool is_signed = 5
        repeated int32 data = 6 [packed = true]
        optional string name = 7
        optional TensorProto.DataType data_type = 8 [default = INT32]
        repeated double scales = 9
        repeated double biases = 10
        optional int32 axis = 11
        optional bool is_multiparam = 12 [default = false]
    """,
    "TensorProtos": """
        repeated TensorProto protos = 1
    """,
    "TensorShape": """
        repeated int64 dims = 1
        optional TensorProto.DataType data_type = 2 [default = FLOAT]
        repeated int32 unknown_dims = 3
        optional bool unknown_shape = 4 [default = false]
        optional string name = 5
    """,
    "TensorShapes": """
        repeated TensorShape shapes = 1
    """,
    "TensorBoundShape": """
        optional TensorShape shape = 1
        repeated TensorBoundShape.DimType dim_type = 2
        optional string name = 3
        optional bool shape_is_final = 4
    """,
    "TensorBoundShapes": """
        repeated TensorBoundShape shapes = 1
        optional int64 max_batch_size = 2
        optional int64 max_feature_len = 3
    """,
    "AOTConfig": """
        required int64 max_batch_size = 1
        required int64 max_seq_size = 2
        required bool in_batch_broadcast = 3
        optional string onnxifi_blacklist_ops = 4
        optional int32 onnxifi_min_ops = 5
    """,
    "Argument": """
        optional string name = 1
        optional float f = 2
        optional int64 i = 3
        optional bytes s = 4
        optional TensorProto t = 10
        optional NetDef n = 8
        repeated float floats = 5
        repeated int64 ints = 6
        repeated bytes strings = 7
        repeated TensorProto tensors = 11
        repeated NetDef nets = 9
        repeated QTensorProto qtensors = 12
    """,
    "DeviceOption": """
        optional int32 device_type = 1 [default = 0]
        optional int32 device_id = 2
        optional uint32 random_seed = 3
        optional string node_name = 4
        optional int32 numa_node_id = 5
        repeated string extra_info = 6
    """,
    "OperatorDef": """
        repeated string input = 1
        repeated string output = 2
        optional string name = 3
        optional string type = 4
        repeated Argument arg = 5
        optional DeviceOption device_option = 6
        optional string engine = 7
        repeated string control_input = 8
        optional bool is_gradient_op = 9 [default = false]
        optional string debug_info = 10
        optional string domain = 11
        optional int64 op_version = 12
    """,
    "MapFieldEntry": """
        required string key = 1
        required string val = 2
    """,
    "BackendOptions": """
        required string backend_name = 1
        repeated MapFieldEntry option = 2
    """,
    "PartitionInfo": """
        required string name = 1
        repeated int32 device_id = 2
        optional string extra_info = 3
        repeated BackendOptions backend_options = 4
    """,
    "NetDef": """
        optional string name = 1
        repeated OperatorDef op = 2
        optional string type = 3
        optional int32 num_workers = 4
        optional DeviceOption device_option = 5
        repeated Argument arg = 6
        repeated string external_input = 7
        repeated string external_output = 8
        repeated PartitionInfo partition_info = 9
    """,
    "ExecutionStep": """
        optional string name = 1
        repeated ExecutionStep substep = 2
        repeated string network = 3
        optional int64 num_iter = 4
        optional string criteria_network = 5 [deprecated = true]
        optional string report_net = 7
        optional int32 report_interval = 8
        optional int64 run_every_ms = 11
        optional bool concurrent_substeps = 6
        optional string should_stop_blob = 9
        optional bool only_once = 10
        optional bool create_workspace = 12
        optional int32 num_concurrent_instances = 13
    """,
    "PlanDef": """
        optional string name = 1
        repeated NetDef network = 2
        repeated ExecutionStep execution_step = 3
    """,
    "BlobProto": """
        optional string name = 1
        optional string type = 2
        optional TensorProto tensor = 3
        optional bytes content = 4
        optional QTensorProto qtensor = 5
        optional int32 content_num_chunks = 6
        optional int32 content_chunk_id = 7
    """,
    "DBReaderProto": """
        optional string name = 1
        optional string source = 2
        optional string db_type = 3
        optional string key = 4
    """,
    # metanet.proto (predictor_exporter's MetaNetDef), same package in Caffe2
    "ModelInfo": """
        optional string project = 1
        optional string modelClass = 2
        optional string version = 3
        optional string predictorType = 4 [default = SINGLE_PREDICTOR]
        optional string modelId = 5
    """,
    "BlobsMap": """
        required string key = 1
        repeated string value = 2
    """,
    "NetsMap": """
        required string key = 1
        required NetDef value = 2
    """,
    "PlansMap": """
        required string key = 1
        required PlanDef value = 2
    """,
    "StringMap": """
        required string key = 1
        required string value = 2
    """,
    "MetaNetDef": """
        repeated BlobsMap blobs = 1
        repeated NetsMap nets = 2
        optional ModelInfo modelInfo = 3
        repeated PlansMap plans = 4
        repeated StringMap applicationSpecificInfo = 5
    """,
    # predictor_consts.proto: names the predictor exporter writes into the DB
    "PredictorConsts": """
        optional string META_NET_DEF = 1 [default = !!META_NET_DEF]
        optional string PREDICTOR_DBREADER = 2 [default = !!PREDICTOR_DBREADER]
        optional string PARAMETERS_BLOB_TYPE = 3 [default = PARAMETERS_BLOB_TYPE]
        optional string INPUTS_BLOB_TYPE = 4 [default = INPUTS_BLOB_TYPE]
        optional string OUTPUTS_BLOB_TYPE = 5 [default = OUTPUTS_BLOB_TYPE]
        optional string GLOBAL_INIT_NET_TYPE = 6 [default = GLOBAL_INIT_NET_TYPE]
        optional string PREDICT_INIT_NET_TYPE = 7 [default = PREDICT_INIT_NET_TYPE]
        optional string PREDICT_NET_TYPE = 8 [default = PREDICT_NET_TYPE]
        optional string SINGLE_PREDICTOR = 9 [default = SINGLE_PREDICTOR]
        optional string MULTI_PREDICTOR = 10 [default = MULTI_PREDICTOR]
        optional string TRAIN_INIT_PLAN_TYPE = 11 [default = TRAIN_INIT_PLAN_TYPE]
        optional string TRAIN_PLAN_TYPE = 12 [default = TRAIN_PLAN_TYPE]
    """,
}

DESCRIPTOR = schema.build(PACKAGE, FILE_NAME, _MESSAGES, _ENUMS)
__all__ = schema.export(globals(), DESCRIPTOR)

# caffe2/python/__init__.py gives every PROTO_<device> the short name code uses: caffe2_pb2.CUDA.
for _name in [n for n in __all__ if n.startswith("PROTO_")]:
    globals()[_name[len("PROTO_"):]] = globals()[_name]
    __all__.append(_name[len("PROTO_"):])
