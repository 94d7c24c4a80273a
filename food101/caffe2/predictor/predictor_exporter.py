"""caffe2.python.predictor.predictor_exporter: a trained net and its parameters in one DB.

    meta = PredictorExportMeta(predict_net=deploy_model.net.Proto(), parameters=params,
                               inputs=["data"], outputs=["softmax"])
    save_to_db("minidb", "model.minidb", meta)
    ...
    predict_net = prepare_prediction_net("model.minidb", "minidb")   # blobs now in the workspace
    workspace.FeedBlob("data", images); workspace.RunNet(predict_net); workspace.FetchBlob("softmax")

The DB holds, as Caffe2 writes it, the blob "!!META_NET_DEF" (a serialized MetaNetDef with the
predict net, a "global init" net that Loads the parameters from the DB reader, and a
"predict init" net that zero-fills inputs and outputs) followed by every parameter blob.
Parameters are what you list: for a net with SpatialBN include the running statistics
(`<bn>_rm`, `<bn>_riv`; `model.GetAllParams()` lists them, `model.params` does not).
"""
import collections

from food101.caffe2 import core, scope, workspace
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.predictor import predictor_py_utils as utils
from food101.caffe2.predictor import serde
from food101.caffe2.predictor_constants import predictor_constants
from food101.caffe2.proto import caffe2_pb2, metanet_pb2


def get_predictor_exporter_helper(submodelNetName):
    """A PredictorExportMeta stub, only to build the names of a submodel's fields."""
    return PredictorExportMeta(predict_net=core.Net(submodelNetName), parameters=[], inputs=[],
                               outputs=[], shapes=None, name=submodelNetName, extra_init_net=None)


class PredictorExportMeta(collections.namedtuple(
        "PredictorExportMeta",
        "predict_net, parameters, inputs, outputs, shapes, name, extra_init_net, "
        "global_init_net, net_type, num_workers, trainer_prefix")):
    """What to export: the predict net (core.Net, NetDef or PlanDef), parameter, input and
    output blob names (or BlobReferences), optional shapes {blob: shape} for inputs/outputs,
    and a `name` that tells several predict nets in one DB apart."""

    def __new__(cls, predict_net, parameters, inputs, outputs, shapes=None, name="",
                extra_init_net=None, global_init_net=None, net_type=None, num_workers=None,
                trainer_prefix=None):
        inputs = [str(i) for i in inputs]
        outputs = [str(o) for o in outputs]
        parameters = [str(p) for p in parameters]
        if len(set(inputs)) != len(inputs):
            raise ValueError("All inputs to the predictor should be unique: %s" % inputs)
        for kind, names in (("inputs", inputs), ("outputs", outputs)):
            common = set(parameters).intersection(names)
            if common:
                raise ValueError("Parameters and %s are required to be disjoint. Intersection: %s"
                                 % (kind, sorted(common)))
        if hasattr(predict_net, "Proto"):
            predict_net = predict_net.Proto()
        if not isinstance(predict_net, (caffe2_pb2.NetDef, caffe2_pb2.PlanDef)):
            raise TypeError("predict_net must be a core.Net, NetDef or PlanDef, got %s"
                            % type(predict_net).__name__)
        return super().__new__(cls, predict_net, parameters, inputs, outputs, shapes or {}, name,
                               extra_init_net, global_init_net, net_type, num_workers,
                               trainer_prefix)

    def inputs_name(self):
        return utils.get_comp_name(predictor_constants.INPUTS_BLOB_TYPE, self.name)

    def outputs_name(self):
        return utils.get_comp_name(predictor_constants.OUTPUTS_BLOB_TYPE, self.name)

    def parameters_name(self):
        return utils.get_comp_name(predictor_constants.PARAMETERS_BLOB_TYPE, self.name)

    def global_init_name(self):
        return utils.get_comp_name(predictor_constants.GLOBAL_INIT_NET_TYPE, self.name)

    def predict_init_name(self):
        return utils.get_comp_name(predictor_constants.PREDICT_INIT_NET_TYPE, self.name)

    def predict_net_name(self):
        return utils.get_comp_name(predictor_constants.PREDICT_NET_TYPE, self.name)

    def train_init_plan_name(self):
        name = utils.get_comp_name(predictor_constants.TRAIN_INIT_PLAN_TYPE, self.name)
        return self.trainer_prefix + "_" + name if self.trainer_prefix else name

    def train_plan_name(self):
        name = utils.get_comp_name(predictor_constants.TRAIN_PLAN_TYPE, self.name)
        return self.trainer_prefix + "_" + name if self.trainer_prefix else name


def prepare_prediction_net(filename, db_type, device_option=None):
    """Load the export at `filename` into the current workspace (parameters, zero-filled
    inputs/outputs) and return the predict net, already created."""
    metanet_def = load_from_db(filename, db_type, device_option)
    for kind in (predictor_constants.GLOBAL_INIT_NET_TYPE, predictor_constants.PREDICT_INIT_NET_TYPE):
        workspace.RunNetOnce(_required_net(metanet_def, kind, filename))
    predict_net = core.Net(_required_net(metanet_def, predictor_constants.PREDICT_NET_TYPE, filename))
    workspace.CreateNet(predict_net)
    return predict_net


def _required_net(metanet_def, key, filename):
    net = utils.GetNet(metanet_def, key)
    if net is None:
        raise KeyError("%s: the MetaNetDef has no net %r (it has: %s)" % (
            filename, key, [n.key for n in metanet_def.nets]))
    return net


def _global_init_net(predictor_export_meta, db_type):
    net = core.Net("global-init")
    if db_type != "manifold_db":
        net.Load([predictor_constants.PREDICTOR_DBREADER], predictor_export_meta.parameters)
        net.Proto().external_input.extend([predictor_constants.PREDICTOR_DBREADER])
        net.Proto().external_output.extend(predictor_export_meta.parameters)
    if predictor_export_meta.global_init_net:
        net.AppendNet(predictor_export_meta.global_init_net)
    utils.AddModelIdArg(predictor_export_meta, net.Proto())
    return net.Proto()


def get_meta_net_def(predictor_export_meta, ws=None, db_type=None):
    """The MetaNetDef save_to_db writes. `ws`: a workspace whose blobs give input/output shapes
    missing from `shapes` (None: the current one)."""
    meta = predictor_export_meta
    meta_net_def = metanet_pb2.MetaNetDef()
    utils.AddNet(meta_net_def, meta.predict_init_name(), utils.create_predict_init_net(ws, meta))
    utils.AddNet(meta_net_def, meta.global_init_name(), _global_init_net(meta, db_type))
    utils.AddNet(meta_net_def, meta.predict_net_name(), utils.create_predict_net(meta))
    utils.AddBlobs(meta_net_def, meta.parameters_name(), meta.parameters)
    utils.AddBlobs(meta_net_def, meta.inputs_name(), meta.inputs)
    utils.AddBlobs(meta_net_def, meta.outputs_name(), meta.outputs)
    return meta_net_def


def set_model_info(meta_net_def, project_str, model_class_str, version):
    if not isinstance(meta_net_def, metanet_pb2.MetaNetDef):
        raise TypeError("set_model_info needs a MetaNetDef, got %s" % type(meta_net_def).__name__)
    meta_net_def.modelInfo.project = project_str
    meta_net_def.modelInfo.modelClass = model_class_str
    meta_net_def.modelInfo.version = version


def save_to_db(db_type, db_destination, predictor_export_meta, use_ideep=False, *args, **kwargs):
    """Write the MetaNetDef and the parameters (from the current workspace) to a new DB.
    `use_ideep` is accepted for compatibility: there is one CPU implementation here."""
    meta_net_def = get_meta_net_def(predictor_export_meta, db_type=db_type)
    workspace.FeedBlob(predictor_constants.META_NET_DEF,
                       serde.serialize_protobuf_struct(meta_net_def))
    op = core.CreateOperator("Save", [predictor_constants.META_NET_DEF] + predictor_export_meta.parameters,
                             [], device_option=core.DeviceOption(caffe2_pb2.CPU), absolute_path=True,
                             db=db_destination, db_type=db_type, **kwargs)
    workspace.RunOperatorOnce(op)


def load_from_db(filename, db_type, device_option=None, *args, **kwargs):
    """Open the DB (the reader stays in the workspace as "!!PREDICTOR_DBREADER") and return
    its MetaNetDef; `device_option` (default: the current DeviceScope) is set on every op."""
    workspace.RunOperatorOnce(core.CreateOperator(
        "CreateDB", [], [core.BlobReference(predictor_constants.PREDICTOR_DBREADER)],
        db=filename, db_type=db_type))
    try:
        workspace.RunOperatorOnce(core.CreateOperator(
            "Load", [core.BlobReference(predictor_constants.PREDICTOR_DBREADER)],
            [core.BlobReference(predictor_constants.META_NET_DEF)]))
    except Caffe2Error as e:
        if predictor_constants.META_NET_DEF not in str(e):
            raise
        raise Caffe2Error("%s is a %s DB but not a predictor_exporter export: it holds no %r "
                          "blob (save_to_db writes one; a plain Save does not)"
                          % (filename, db_type, predictor_constants.META_NET_DEF)) from None
    blob = workspace.FetchBlob(predictor_constants.META_NET_DEF)
    meta_net_def = serde.deserialize_protobuf_struct(
        blob if isinstance(blob, bytes) else str(blob).encode("utf-8"), metanet_pb2.MetaNetDef)
    if device_option is None:
        device_option = scope.CurrentDeviceScope()
    if device_option is not None:
        for entry in meta_net_def.nets:
            for op in entry.value.op:
                op.device_option.CopyFrom(device_option)
    return meta_net_def
