"""caffe2.python.predictor.predictor_py_utils: MetaNetDef map access and the nets an export
holds besides the predict net (the predict-init net that zero-fills inputs and outputs)."""
from food101.caffe2 import core, workspace


def create_predict_net(predictor_export_meta):
    """The predict net with the export's inputs + parameters as external inputs."""
    meta = predictor_export_meta
    net = core.Net(meta.predict_net.name or "predict")
    net.Proto().op.extend(meta.predict_net.op)
    net.Proto().external_input.extend(meta.inputs + meta.parameters)
    net.Proto().external_output.extend(meta.outputs)
    net.Proto().arg.extend(meta.predict_net.arg)
    if meta.net_type is not None:
        net.Proto().type = meta.net_type
    if meta.num_workers is not None:
        net.Proto().num_workers = meta.num_workers
    return net.Proto()


def _blob_shape(ws, blob):
    if ws is None:
        if not workspace.HasBlob(blob):
            raise KeyError("%s not in workspace but needed for shape: %s" % (blob, workspace.Blobs()))
        return workspace.FetchBlob(blob).shape
    if blob not in ws.blobs:
        raise KeyError("%s not in workspace but needed for shape: %s" % (blob, list(ws.blobs)))
    value = ws.blobs[blob]
    value = value.fetch() if hasattr(value, "fetch") else value
    return tuple(value.shape)


def create_predict_init_net(ws, predictor_export_meta):
    """A net that zero-fills every input and output blob with its shape (from `shapes`, else
    from the blob in the workspace `ws`; None means the current workspace)."""
    meta = predictor_export_meta
    net = core.Net("predict-init")
    external_blobs = meta.inputs + meta.outputs
    for blob in external_blobs:
        shape = meta.shapes.get(blob)
        if shape is None:
            shape = _blob_shape(ws, blob)
        op = core.CreateOperator("ConstantFill", [], [blob], shape=list(shape), value=0.0)
        op.ClearField("device_option")   # Caffe2 builds these outside any DeviceScope
        net.Proto().op.extend([op])
    net.Proto().external_input.extend(external_blobs)
    if meta.extra_init_net:
        net.AppendNet(meta.extra_init_net)
    AddModelIdArg(meta, net.Proto())
    return net.Proto()


def get_comp_name(string, name):
    return string + "_" + name if name else string


def _ProtoMapGet(field, key):
    for entry in field:
        if entry.key == key:
            return entry.value
    return None


def GetPlan(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.plans, key)


GetPlanOriginal = GetPlan


def GetBlobs(meta_net_def, key):
    blobs = _ProtoMapGet(meta_net_def.blobs, key)
    return [] if blobs is None else blobs


def GetBlobsByTypePrefix(meta_net_def, blob_type_prefix):
    """Blobs of every entry whose key starts with the prefix, first occurrence order."""
    seen = {}
    for entry in meta_net_def.blobs:
        if entry.key.startswith(blob_type_prefix):
            for blob in entry.value:
                seen.setdefault(blob, len(seen))
    return list(seen)


def GetNet(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.nets, key)


GetNetOriginal = GetNet


def GetApplicationSpecificInfo(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.applicationSpecificInfo, key)


def AddBlobs(meta_net_def, blob_name, blob_def):
    blobs = _ProtoMapGet(meta_net_def.blobs, blob_name)
    if blobs is None:
        entry = meta_net_def.blobs.add()
        entry.key = blob_name
        blobs = entry.value
    blobs.extend(blob_def)


def ReplaceBlobs(meta_net_def, blob_name, blob_def):
    blobs = _ProtoMapGet(meta_net_def.blobs, blob_name)
    if blobs is None:
        raise KeyError("The blob_name:%s does not exist" % blob_name)
    del blobs[:]
    blobs.extend(blob_def)


def AddPlan(meta_net_def, plan_name, plan_def):
    meta_net_def.plans.add(key=plan_name, value=plan_def)


def AddNet(meta_net_def, net_name, net_def):
    meta_net_def.nets.add(key=net_name, value=net_def)


def GetArgumentByName(net_def, arg_name):
    for arg in net_def.arg:
        if arg.name == arg_name:
            return arg
    return None


def AddModelIdArg(meta_net_def, net_def):
    """Copy the predict net's `model_id` argument (if any) onto `net_def` (an init net)."""
    model_id = GetArgumentByName(meta_net_def.predict_net, "model_id")
    if model_id is None:
        return
    old_id = GetArgumentByName(net_def, "model_id")
    if old_id is not None:
        old_id.i = model_id.i
        return
    net_def.arg.add(name="model_id", i=model_id.i)
