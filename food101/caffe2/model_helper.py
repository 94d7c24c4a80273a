"""ModelHelper: a training model as two nets plus its parameters (caffe2.python.model_helper).

    model = model_helper.ModelHelper(name="food101_train", arg_scope={"order": "NCHW"})
    brew.conv(model, "data", "conv1", 3, 64, kernel=3)   # op in model.net, XavierFill/ConstantFill
                                                          # in model.param_init_net, conv1_w/_b
                                                          # appended to model.params
    model.AddGradientOperators([loss])                    # fills model.param_to_grad
    optimizer.build_sgd(model, base_learning_rate=0.01, ...)

    model.param_init_net ──RunNetOnce──► params in the workspace
    model.net ──CreateNet / RunNet──► forward, gradients, updates

`model.<OpType>(...)` creates a raw op in `model.net` (no parameters), as in Caffe2.
`model.TensorProtosDBInput([], [data, label], batch_size, db, db_type)` reads an LMDB of
TensorProtos: a CreateDB reader in param_init_net and a TensorProtosDBInput op in net.
"""
import logging

from food101.caffe2 import core, scope
from food101.caffe2.proto import caffe2_pb2
from food101.caffe2.modeling import parameter_info
from food101.caffe2.modeling.parameter_info import ParameterTags

logger = logging.getLogger(__name__)

# Ops ModelHelper creates by attribute without a warning (Caffe2's list).
_known_working_ops = frozenset([
    "Accuracy", "Adam", "Add", "Adagrad", "SparseAdagrad", "AveragedLoss", "Cast", "Checkpoint",
    "ConstantFill", "Copy", "CopyGPUToCPU", "CopyCPUToGPU", "DequeueBlobs", "EnsureCPUOutput",
    "ExpandDims", "Flatten", "FlattenToVec", "LabelCrossEntropy", "LearningRate", "MakeTwoClass",
    "MatMul", "NCCLAllreduce", "NHWC2NCHW", "PackSegments", "Print", "PRelu", "ReduceFrontSum",
    "Scale", "ScatterWeightedSum", "Sigmoid", "SortedSegmentSum", "Snapshot", "Softmax",
    "SoftmaxWithLoss", "SquaredL2Distance", "Squeeze", "StopGradient", "Summarize", "Tanh",
    "Transpose", "UnpackSegments", "WeightedSum", "YellowFin",
])
_warned_ops = set()


class ModelHelper:
    """A model: `net`, `param_init_net`, `params`, `param_to_grad` and the helpers' arg scope.

    init_params: when False, helpers expect parameters from outside (ExternalInitializer:
    no fill ops), e.g. for a predict net whose weights come from a Model Zoo init_net.
    arg_scope: default keyword arguments for every brew helper (Caffe2's defaults are
    order="NCHW", use_cudnn=True, cudnn_exhaustive_search=False).
    """

    def __init__(self, name=None, init_params=True, allow_not_known_ops=True,
                 skip_sparse_optim=False, param_model=None, arg_scope=None):
        self.name = name or "model"
        self.net = core.Net(self.name)
        if param_model is not None:  # share parameters with another model
            self.param_init_net = param_model.param_init_net
            self.param_to_grad = param_model.param_to_grad
            self.params = param_model.params
            self._parameters_info = param_model._parameters_info
            self._computed_params = param_model._computed_params
        else:
            self.param_init_net = core.Net(self.name + "_init")
            self.param_to_grad = {}
            self.params = []
            self._parameters_info = {}
            self._computed_params = []
        self.gradient_ops_added = False
        self.grad_map = {}
        self.init_params = init_params
        self.allow_not_known_ops = allow_not_known_ops
        self.skip_sparse_optim = skip_sparse_optim
        self.weights = []
        self.biases = []
        self._arg_scope = {"order": "NCHW", "use_cudnn": True, "cudnn_exhaustive_search": False}
        if arg_scope is not None:
            self._arg_scope.update(arg_scope)

    @property
    def arg_scope(self):
        return self._arg_scope

    def __repr__(self):
        return "<ModelHelper %r: %d params, %d ops>" % (self.name, len(self.params),
                                                        len(self.net.Proto().op))

    # -- parameters -------------------------------------------------------------------------
    @staticmethod
    def _normalize_tags(tags):
        if tags is None:
            return set()
        return set(tags) if isinstance(tags, (list, tuple, set)) else {tags}

    def create_param(self, param_name, shape, initializer, tags=None):
        """Create (once) the parameter `param_name` in the current NameScope.

        initializer adds its fill op to param_init_net (modeling.initializers); tags
        (ParameterTags) decide where it is listed: params, weights, biases or computed params.
        Creating an existing parameter again returns it (its shape must match)."""
        if isinstance(shape, caffe2_pb2.Argument):  # e.g. a "shape" argument of another op
            shape = list(shape.ints)
        if isinstance(param_name, core.BlobReference):
            param_name = str(param_name)
        elif isinstance(param_name, str):
            param_name = core.ScopedName(param_name)
        else:
            raise TypeError("param_name must be a str or BlobReference, got %r" % (param_name,))
        if param_name in self._parameters_info:
            existing = self._parameters_info[param_name]
            if existing.shape is not None and list(existing.shape) != list(shape):
                raise ValueError("parameter %r exists with shape %s; asked again with shape %s"
                                 % (param_name, list(existing.shape), list(shape)))
            return existing.blob
        param_info = initializer.create_param(
            param_name=core.BlobReference(param_name), init_net=self.param_init_net, shape=shape)
        self._parameters_info[param_name] = param_info
        self.AddParameter(param_info.blob, tags)
        return param_info.blob

    def get_param_info(self, param):
        if not isinstance(param, core.BlobReference):
            raise TypeError("param %r is not a BlobReference" % (param,))
        return self._parameters_info.get(str(param))

    def AddParameter(self, param, tags=None):
        """Register an existing blob as a parameter (COMPUTED_PARAM: not optimized)."""
        if not isinstance(param, core.BlobReference):
            raise TypeError("AddParameter takes a BlobReference, got %r" % (param,))
        tags = self._normalize_tags(tags)
        if ParameterTags.COMPUTED_PARAM in tags:
            self._computed_params.append(param)
        else:
            self.params.append(param)
        if ParameterTags.WEIGHT in tags:
            self.weights.append(param)
        if ParameterTags.BIAS in tags:
            self.biases.append(param)

    def _in_scope(self, blobs, namescope):
        if namescope is None:
            namescope = scope.CurrentNameScope()
        elif namescope and not namescope.endswith(scope._NAMESCOPE_SEPARATOR):
            namescope += scope._NAMESCOPE_SEPARATOR
        if namescope == "":
            return blobs[:]
        return [p for p in blobs if p.GetNameScope().startswith(namescope)]

    def GetParams(self, namescope=None, top_scope=False):
        """The learned parameters in `namescope` (default: the current NameScope)."""
        return self._in_scope(self.params, namescope)

    def GetComputedParams(self, namescope=None):
        """Computed state such as SpatialBN running statistics (never optimized)."""
        return self._in_scope(self._computed_params, namescope)

    @property
    def computed_params(self):
        return self._computed_params

    def GetAllParams(self, namescope=None):
        return self.GetParams(namescope) + self.GetComputedParams(namescope)

    def _Validate(self):
        names = [str(p) for p in self.params]
        seen, dupes = set(), []
        for name in names:
            if name in seen and name not in dupes:
                dupes.append(name)
            seen.add(name)
        return sorted(dupes)

    def Validate(self):
        """Fail if a parameter is registered twice (it would be updated twice)."""
        dupes = self._Validate()
        if dupes:
            raise ValueError("model %r: duplicate params: %s" % (self.name, dupes))

    # -- gradients ----------------------------------------------------------------------------
    def AddGradientOperators(self, *args, **kwargs):
        """net.AddGradientOperators(...), then param_to_grad for every param with a gradient."""
        if self.gradient_ops_added:
            raise RuntimeError("model %r: AddGradientOperators can only be called once" % self.name)
        self.Validate()
        self.gradient_ops_added = True
        self.grad_map = self.net.AddGradientOperators(*args, **kwargs)
        self.param_to_grad = self.get_param_to_grad(self.params)
        for param, grad in self.param_to_grad.items():
            info = self.get_param_info(param)
            if info is not None:
                info.grad = grad
            else:
                self._parameters_info[str(param)] = parameter_info.ParameterInfo(
                    param_id=None, param=param, grad=grad)
        return self.grad_map

    def get_param_to_grad(self, params):
        """{param: gradient blob} for the given params that receive a gradient."""
        if not self.gradient_ops_added:
            raise RuntimeError("model %r: call AddGradientOperators first" % self.name)
        return {p: self.grad_map[str(p)] for p in params if str(p) in self.grad_map}

    def GetOptimizationParamInfo(self, params=None):
        """ParameterInfo (with .grad) of every parameter an optimizer should update."""
        if not self.gradient_ops_added:
            raise RuntimeError("model %r: call AddGradientOperators before building an optimizer"
                               % self.name)
        param_to_grad = self.get_param_to_grad(params) if params else self.param_to_grad
        return [self.get_param_info(p) for p, g in param_to_grad.items()
                if not self.skip_sparse_optim or not isinstance(g, core.GradientSlice)]

    # -- complete nets and DB readers, as Caffe2's ModelHelper ------------------------------
    _INIT_NET_TAG = "/param_init_net"

    def GetCompleteNet(self):
        """param_init_net followed by net in one Net; the init ops carry "/param_init_net" in
        their debug_info so ConstructInitTrainNetfromNet can split them again."""
        complete = self.param_init_net.Clone(self.name + "_complete_net", keep_schema=True)
        for op in complete.Proto().op:
            op.debug_info = op.debug_info + self._INIT_NET_TAG
        complete.AppendNet(self.net)
        if self.net.Proto().HasField("type"):
            complete.Proto().type = self.net.Proto().type
        return complete

    def ConstructInitTrainNetfromNet(self, net):
        """Split a GetCompleteNet() result back into param_init_net and net."""
        init_ids, train_ids = [], []
        for index, op in enumerate(net.Proto().op):
            (init_ids if op.debug_info.endswith(self._INIT_NET_TAG) else train_ids).append(index)
        self.param_init_net = net.Clone(net.Name() + "/generated_param_init_net",
                                        op_id_mask=init_ids, update_external_list=True)
        self.net = net.Clone(net.Name() + "/generated_net", op_id_mask=train_ids,
                             update_external_list=True)

    def CreateDB(self, blob_out, db, db_type, **kwargs):
        """A DB reader blob, created once by param_init_net (as Caffe2)."""
        return self.param_init_net.CreateDB([], blob_out, db=db, db_type=db_type, **kwargs)

    # -- data input ---------------------------------------------------------------------------
    def TensorProtosDBInput(self, unused_blob_in, blob_out, batch_size, db, db_type, **kwargs):
        """Read batches of TensorProtos records from `db` (e.g. an LMDB) into `blob_out`."""
        if len(unused_blob_in) != 0:
            raise ValueError("ModelHelper.TensorProtosDBInput creates its own reader; pass [] as "
                             "the input (use model.net.TensorProtosDBInput to pass a reader)")
        from food101.caffe2.helpers.db_input import db_input
        return db_input(self, blob_out, batch_size, db, db_type, **kwargs)

    def Proto(self):
        """The net's NetDef (net_drawer and exporters accept a model as a net)."""
        return self.net.Proto()

    def InitProto(self):
        return self.param_init_net.Proto()

    # -- raw ops by attribute -----------------------------------------------------------------
    def __getattr__(self, op_type):
        if op_type.startswith("_"):
            raise AttributeError(op_type)
        if not core.IsOperator(op_type):
            core._op_factory_or_error(op_type, self.net.Name())  # raises with closest names
        if op_type not in _known_working_ops:
            if not self.allow_not_known_ops:
                raise AttributeError("operator %s is not known to be safe in a ModelHelper"
                                     % op_type)
            if op_type not in _warned_ops:
                _warned_ops.add(op_type)
                logger.debug("creating op %s that ModelHelper does not list as known", op_type)
        return getattr(self.net, op_type)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(core.registry.registered_types()))
