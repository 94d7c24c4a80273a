"""Caffe2's caffe_translator.py API on top of `translator`: TranslateModel,
ConvertTensorProtosToInitNet, TranslatorRegistry, the command line. Re-exported as
food101.caffe2.caffe_translator so Caffe2 scripts run with one changed import."""
import argparse
import logging
import re
import sys

import numpy as np
import torch

from food101.caffe2.utils import ArgsToDict, make_op
from food101.caffe2.errors import Caffe2Error
from food101.caffe2.executor import PreparedNet
from food101.caffe2.proto import caffe2_pb2, save_net
from food101.caffe2.workspace import Workspace
from food101.interop.caffe import caffe_pb2, netfile, translator

log = logging.getLogger("caffe_translator")


class TranslatorRegistry:
    """Caffe2's class interface to the converter table (food101.interop.caffe.translator.LAYERS)."""
    registry_ = translator.LAYERS

    @classmethod
    def Register(cls, op_name):
        return translator.layer_converter(op_name)

    @classmethod
    def TranslateModel(cls, *args, **kwargs):
        return TranslateModel(*args, **kwargs)


def TranslateModel(caffe_net, pretrained_net, is_test=False, net_state=None,
                   remove_legacy_pad=False, input_dims=None, input_mean=None):
    """(caffe_pb2.NetParameter, NetParameter with weights) -> (predict NetDef, TensorProtos).

    As Caffe2's: the NetDef lists the ops only (the command line adds external inputs and
    outputs); `net_state` (caffe_pb2.NetState) picks layers by phase, TEST by default.
    input_mean: a per-channel mean (or a scalar) subtracted from the input by a first `Sub` op
    (blob `<input>_mean`), for Caffe models trained on mean-subtracted images."""
    if len(caffe_net.layers):
        caffe_net = netfile.upgrade_v1(_copy(caffe_net))
    if pretrained_net is not None and len(pretrained_net.layers):
        pretrained_net = netfile.upgrade_v1(_copy(pretrained_net))
    t = translator.translate(caffe_net, pretrained_net, is_test=is_test, net_state=net_state,
                             input_dims=input_dims)
    net = caffe2_pb2.NetDef(name=caffe_net.name)
    net.op.extend(t.ops)
    params = t.tensor_protos()
    if input_mean is not None:
        _subtract_mean(net, params, np.asarray(input_mean, np.float32))
    if remove_legacy_pad:
        if not input_dims:
            raise ValueError("Please specify input_dims to remove legacy_pad")
        net = remove_legacy_padding(net, params, input_dims)
    return net, params


def _copy(message):
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _subtract_mean(net, params, mean):
    data = net.op[0].input[0]
    centred, mean_blob = data + "_centered", data + "_mean"
    for op in net.op:
        for i, name in enumerate(op.input):
            if name == data:
                op.input[i] = centred
    sub = make_op("Sub", [data, mean_blob], [centred], broadcast=1,
                        **({"axis": 1} if mean.ndim == 1 and mean.size > 1 else {}))
    net.op.insert(0, sub)
    t = params.protos.add(name=mean_blob, data_type=caffe2_pb2.TensorProto.FLOAT)
    t.dims.extend(mean.shape)
    t.float_data.extend(mean.ravel().tolist())


def _workspace(params, input_name, dims):
    ws = Workspace("caffe-translator-legacy-pad")
    for p in params.protos:
        ws.blobs[p.name] = torch.tensor(np.asarray(p.float_data, np.float32).reshape(tuple(p.dims)))
    ws.blobs[input_name] = torch.randn(*[int(d) for d in dims])
    return ws


def remove_legacy_padding(net, params, input_dims):
    """Replace `legacy_pad` (Caffe's ceil-mode sizes) by explicit tail padding, as Caffe2's
    _RemoveLegacyPad does: run each such op both ways and add 1 to pad_b / pad_r where the
    legacy output is one larger."""
    ws = _workspace(params, net.op[0].input[0], input_dims)
    for op in net.op:
        args = ArgsToDict(op.arg)
        if "legacy_pad" in args and re.match(r"^(Conv|ConvTranspose|MaxPool|AveragePool)$", op.type):
            single = caffe2_pb2.NetDef(name="legacy")
            single.op.append(op)
            PreparedNet(single, ws).run()
            legacy_shape = tuple(ws.blobs[op.output[0]].shape)
            pad = args.get("pad", 0)
            pads = {k: args.get(k, pad) for k in ("pad_t", "pad_l", "pad_b", "pad_r")}
            trial = caffe2_pb2.OperatorDef()
            trial.CopyFrom(op)
            kept = [a for a in trial.arg if a.name not in ("legacy_pad", "pad", "pad_t", "pad_l",
                                                           "pad_b", "pad_r")]
            for side in range(2):
                del trial.arg[:]
                trial.arg.extend(kept)
                for k, v in pads.items():
                    trial.arg.append(make_op("X", [], [], **{k: v}).arg[0])
                trial.output[0] = op.output[0] + "_nonlegacy"
                single = caffe2_pb2.NetDef(name="nonlegacy")
                single.op.append(trial)
                PreparedNet(single, ws).run()
                shape = tuple(ws.blobs[trial.output[0]].shape)
                if shape == legacy_shape:
                    break
                if shape[2] + 1 == legacy_shape[2]:
                    pads["pad_b"] += 1
                if shape[3] + 1 == legacy_shape[3]:
                    pads["pad_r"] += 1
            if shape != legacy_shape:
                raise ValueError("op %s %s: cannot express legacy padding as pads (%s vs %s)"
                                 % (op.type, op.output[0], shape, legacy_shape))
            trial.output[0] = op.output[0]
            op.CopyFrom(trial)
        single = caffe2_pb2.NetDef(name="rest")
        single.op.append(op)
        PreparedNet(single, ws).run()
    return net


def ConvertTensorProtosToInitNet(net_params, input_name):
    """TensorProtos -> an init net of GivenTensorFill ops, plus a ConstantFill placeholder of
    shape [1] for the input (as Caffe2's). Only float tensors."""
    init_net = caffe2_pb2.NetDef()
    for tensor in net_params.protos:
        if len(tensor.float_data) == 0:
            raise RuntimeError("Only float tensors are supported in this util (tensor %r has no "
                               "float_data)" % tensor.name)
        op = make_op("GivenTensorFill", [], [tensor.name], shape=list(tensor.dims),
                           values=np.asarray(tensor.float_data, np.float32))
        init_net.op.append(op)
    init_net.op.append(make_op("ConstantFill", [], [input_name], shape=[1]))
    return init_net


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m food101.caffe2.caffe_translator",
        description="Utilitity to convert pretrained caffe models to Caffe2 models.")
    parser.add_argument("prototext", help="Caffe prototext.")
    parser.add_argument("caffemodel", help="Caffe trained model.")
    parser.add_argument("--init_net", help="Caffe2 initialization net.", default="init_net.pb")
    parser.add_argument("--predict_net", help="Caffe2 prediction net.", default="predict_net.pb")
    parser.add_argument("--remove_legacy_pad", help="Remove legacy pad (Only works for nets with "
                        "one input blob)", action="store_true", default=False)
    parser.add_argument("--input_dims", help="Dimension of input blob: N C H W, e.g. 1 3 227 227 "
                        "(needed by --remove_legacy_pad)", nargs="+", type=int, default=[],
                        metavar="N C H W")
    args = parser.parse_args(argv)
    if args.input_dims and (len(args.input_dims) != 4 or min(args.input_dims) < 1):
        parser.error("--input_dims %s: give the input blob's 4 dimensions N C H W, each >= 1 "
                     "(e.g. --input_dims 1 3 227 227)" % " ".join(map(str, args.input_dims)))
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    try:
        caffenet = netfile.read_net(args.prototext)
        if not caffenet.layer:
            raise netfile.CaffeFormatError("%s has no layers: nothing to translate (an empty "
                                           "file? a deploy.prototxt lists `layer { ... }` "
                                           "entries)" % args.prototext)
        pretrained = netfile.read_caffemodel(args.caffemodel)
        net, params = TranslateModel(caffenet, pretrained, is_test=True,
                                     remove_legacy_pad=args.remove_legacy_pad,
                                     input_dims=args.input_dims)
    except (netfile.CaffeFormatError, ValueError) as e:
        print("caffe_translator: error: %s" % e, file=sys.stderr)
        return 2
    except Caffe2Error as e:  # running the net for --remove_legacy_pad at --input_dims
        print("caffe_translator: error: running the translated net on an input of shape %s "
              "(--input_dims) failed: %s" % (args.input_dims, e), file=sys.stderr)
        return 2
    if not net.op:
        print("caffe_translator: error: %s: no layer of the TEST phase translated to an op"
              % args.prototext, file=sys.stderr)
        return 2
    external_input = net.op[0].input[0]
    external_output = net.op[-1].output[0]
    net.external_input.extend([external_input] + [p.name for p in params.protos])
    net.external_output.extend([external_output])
    init_net = ConvertTensorProtosToInitNet(params, external_input)
    save_net(net, args.predict_net)
    if args.predict_net.endswith(".pb"):  # Caffe2 also writes the text form beside it
        save_net(net, args.predict_net + "txt")
    save_net(init_net, args.init_net)
    print("wrote %s (%d ops), %s (%d parameters)" % (args.predict_net, len(net.op), args.init_net,
                                                      len(params.protos)))
    return 0
