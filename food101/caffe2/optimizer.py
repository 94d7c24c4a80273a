"""Optimizers: the update ops appended to a model after AddGradientOperators
(caffe2.python.optimizer).

    model.AddGradientOperators([loss])
    optimizer.add_weight_decay(model, 5e-4)                 # grad += 5e-4 * param, WEIGHT params
    optimizer.build_sgd(model, base_learning_rate=0.01, policy="step", stepsize=4, gamma=0.5,
                        momentum=0.9)                       # Nesterov momentum by default

What build_sgd adds, with Caffe2's blob names (N = the optimizer's instance number):

    param_init_net: optimizer_iteration (int64 0, CPU), iteration_mutex, ONE_<dev>_<id>,
                    <param>_momentum (zeros like the param)
    net:            AtomicIter(iteration_mutex, optimizer_iteration)
                    LearningRate(optimizer_iteration) -> SgdOptimizer_N_lr_cpu
                    MomentumSGDUpdate(grad, momentum, lr, param) -> grad, momentum, param
                    (without momentum: WeightedSum(param, ONE, grad, lr) -> param)

Sign convention: `base_learning_rate` is positive. The LearningRate op gets
base_lr = -base_learning_rate when the update is a WeightedSum (param + lr * grad must descend)
and +base_learning_rate for MomentumSGDUpdate, which subtracts itself. Any extra keyword
(stepsize, gamma, power, max_iter, num_iter, start_multiplier, ...) goes to the LearningRate op.

Only parameters with a gradient are updated (`model.GetOptimizationParamInfo()`); blobs that are
not registered params (a frozen backbone) get no update ops at all. Instance numbers count per
class for the whole process, as in Caffe2; `reset_optimizer_instance_count()` restarts them.
"""
from collections import defaultdict, namedtuple

import numpy as np

from food101.caffe2 import core, scope
from food101.caffe2.modeling import parameter_info
from food101.caffe2.proto import caffe2_pb2

OPTIMIZER_ITERATION_NAME = "optimizer_iteration"
ITERATION_MUTEX_NAME = "iteration_mutex"
_LEARNING_RATE_INJECTION = "lr_injection"

AuxOptimizerParams = namedtuple("AuxOptimizerParams", ["local", "shared"])
_optimizer_instance_count = defaultdict(int)


def reset_optimizer_instance_count():
    """Restart the per-class instance numbers (SgdOptimizer_0_lr_cpu again)."""
    _optimizer_instance_count.clear()


def BuildUniqueMutexIter(init_net, net, iter=None, iter_mutex=None, iter_val=0):
    """The shared iteration counter: created once (on CPU) in init_net, advanced by an
    AtomicIter in net; later calls return the existing blob."""
    iter = iter if iter is not None else OPTIMIZER_ITERATION_NAME
    iter_mutex = iter_mutex if iter_mutex is not None else ITERATION_MUTEX_NAME
    if init_net.BlobIsDefined(iter):
        return init_net.GetBlobRef(iter)
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
        iteration = init_net.ConstantFill([], iter, shape=[1], value=iter_val,
                                          dtype=core.DataType.INT64)
        mutex = init_net.CreateMutex([], [iter_mutex])
        net.AtomicIter([mutex, iteration], [iteration])
    return iteration


class Optimizer:
    """Adds the update ops of one parameter: `optimizer(net, param_init_net, param_info)`."""

    def __init__(self):
        self._aux_params = AuxOptimizerParams(local=[], shared=[])
        self._instance_num = _optimizer_instance_count[type(self).__name__]
        _optimizer_instance_count[type(self).__name__] += 1
        self._lr_multiplier = None
        self._local_lr_multiplier = None
        self._local_lr_multiplier_on_gpu = False

    def __call__(self, net, param_init_net, param, grad=None):
        if grad is None:
            if not isinstance(param, parameter_info.ParameterInfo) or param.grad is None:
                raise ValueError("optimizer: pass a ParameterInfo with .grad, or param and grad")
            param_info = param
        else:
            if isinstance(param, str):
                param = core.BlobReference(param)
            param_info = parameter_info.ParameterInfo(param_id=None, param=param, grad=grad)
        self._run(net, param_init_net, param_info)

    def _run(self, net, param_init_net, param_info):
        raise NotImplementedError

    def get_cpu_blob_name(self, base_str, node_name=""):
        return "%s_%d_%s%s_cpu" % (type(self).__name__, self._instance_num, base_str, node_name)

    def get_gpu_blob_name(self, base_str, gpu_id, node_name):
        return "%s_%d_%s%s_gpu%d" % (type(self).__name__, self._instance_num, base_str,
                                     node_name, gpu_id)

    def make_unique_blob_name(self, base_str):
        """A name unique to this optimizer instance and the current device."""
        current = scope.CurrentDeviceScope()
        if current is None:
            return self.get_cpu_blob_name(base_str)
        if core.IsGPUDeviceType(current.device_type):
            return self.get_gpu_blob_name(base_str, current.device_id, current.node_name)
        return self.get_cpu_blob_name(base_str, current.node_name)

    def build_lr(self, net, param_init_net, base_learning_rate, learning_rate_blob=None,
                 policy="fixed", iter_val=0, **kwargs):
        """The LearningRate op (once per optimizer and device) fed by the shared iteration.

        The op's base_lr is -base_learning_rate: optimizers pass the value whose negation is
        what their update op needs."""
        if learning_rate_blob is None:
            learning_rate_blob = self.make_unique_blob_name("lr")
        iteration = BuildUniqueMutexIter(param_init_net, net, iter_val=iter_val)
        if not net.BlobIsDefined(learning_rate_blob):
            lr = net.LearningRate([iteration], learning_rate_blob, base_lr=-base_learning_rate,
                                  policy=policy, **kwargs)
        else:
            lr = net.GetBlobRef(learning_rate_blob)
        if self._lr_multiplier is not None:
            # the multiplier lives on CPU (norm ratio, lr_injection): copied to this device
            multiplier = net.CopyFromCPUInput(self._lr_multiplier,
                                              self.make_unique_blob_name("lr_multiplier"))
            lr = net.Mul([lr, multiplier], self.make_unique_blob_name("scaled_lr"), broadcast=1)
        if self._local_lr_multiplier is not None:
            local = self._local_lr_multiplier
            current = scope.CurrentDeviceScope()
            if (current is not None and core.IsGPUDeviceType(current.device_type)
                    and not self._local_lr_multiplier_on_gpu):
                local = net.CopyFromCPUInput(local,
                                             self.make_unique_blob_name("local_lr_multiplier"))
            lr = net.Mul([lr, local], self.make_unique_blob_name("local_scaled_lr"), broadcast=1)
        return lr, iteration

    def add_lr_multiplier(self, lr_multiplier):
        """Scale every learning rate this optimizer builds from now on by a blob."""
        self._lr_multiplier = lr_multiplier

    def _add_local_lr_multiplier(self, local_lr_multiplier, is_gpu_blob=False):
        self._local_lr_multiplier = local_lr_multiplier
        self._local_lr_multiplier_on_gpu = is_gpu_blob

    def _clear_local_lr_multiplier(self):
        self._local_lr_multiplier = None
        self._local_lr_multiplier_on_gpu = False

    @staticmethod
    def dedup(net, sparse_dedup_aggregator, grad):
        if not isinstance(grad, core.GradientSlice):
            raise TypeError("dedup works on sparse gradients (GradientSlice), got %r" % (grad,))
        if sparse_dedup_aggregator:
            return net.DeduplicateGradientSlices(grad, aggregator=sparse_dedup_aggregator)
        return grad

    def get_auxiliary_parameters(self):
        """AuxOptimizerParams(local=[per-param state such as momentum], shared=[ONE, iter])."""
        return self._aux_params

    def scale_learning_rate(self, *args, **kwargs):
        raise NotImplementedError("%s does not support scale_learning_rate" % type(self).__name__)

    def create_lars_inputs(self, param_init_net, weight_decay, trust, lr_max):
        """The [1] blobs weight_decay, trust and lr_max a Lars op reads."""
        wd = param_init_net.ConstantFill([], "weight_decay", shape=[1], value=weight_decay)
        trust = param_init_net.ConstantFill([], "trust", shape=[1], value=trust)
        lr_max = param_init_net.ConstantFill([], "lr_max", shape=[1], value=lr_max)
        return wd, trust, lr_max

    def _add_lars(self, net, param_init_net, param, grad, offset):
        """LARS (dense grads only, as Caffe2): a Lars op rescales this param's learning rate
        through the local lr multiplier."""
        if offset is None or isinstance(grad, core.GradientSlice):
            return
        if offset < 0:
            raise ValueError("Lars offset must be nonnegative, got %r" % offset)
        wd, trust, lr_max = self.create_lars_inputs(param_init_net, 0.0, 1.0,
                                                    float(np.finfo(np.float32).max))
        multiplier = net.Lars([param, grad, wd, trust, lr_max],
                              self.make_unique_blob_name(str(param) + "_lars"),
                              offset=offset, lr_min=0.0)
        current = scope.CurrentDeviceScope()
        self._add_local_lr_multiplier(
            multiplier, is_gpu_blob=current is not None and core.IsGPUDeviceType(
                current.device_type))


def _rows_fill(param_init_net, param, name):
    """A zero vector with one value per row of `param` (row-wise optimizer state): its size
    from shape inference when known, else read from the param's Shape at run time."""
    from food101.caffe2 import workspace
    shapes, _ = workspace.InferShapesAndTypes([param_init_net])
    if str(param) in shapes:
        return param_init_net.ConstantFill([], name, shape=[shapes[str(param)][0]], value=0.0)
    shape = param_init_net.Shape(param, str(param) + "_shape")
    num_rows = param_init_net.Slice([shape], str(shape) + "_numrows", starts=[0], ends=[1])
    return param_init_net.ConstantFill(num_rows, name, input_as_shape=1, value=0.0)


def _check_positive_lr(optimizer_name, value):
    if value < 0:
        raise ValueError(
            "%s: base_learning_rate must be positive (got %r); the sign for descent is applied "
            "inside (LearningRate gets base_lr=-base_learning_rate for WeightedSum updates)"
            % (optimizer_name, value))


def _one_blob(param_init_net, with_node_name=True):
    dev = scope.CurrentDeviceScope()
    if dev is None:
        dev = core.DeviceOption(caffe2_pb2.CPU)
    name = "ONE_%d_%d%s" % (dev.device_type, dev.device_id, dev.node_name if with_node_name else "")
    return param_init_net.ConstantFill([], name, shape=[1], value=1.0)


class SgdOptimizer(Optimizer):
    """SGD, optionally with momentum (Nesterov unless nesterov=0, as Caffe2's default)."""

    def __init__(self, base_learning_rate=0.01, policy="fixed", momentum=0.0, nesterov=1,
                 sparse_dedup_aggregator=None, lars=None, **kwargs):
        super().__init__()
        self.base_learning_rate = base_learning_rate
        self.policy = policy
        self.momentum = momentum
        self.nesterov = nesterov
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.lars = lars
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.base_learning_rate == 0:
            return
        _check_positive_lr(type(self).__name__, self.base_learning_rate)
        self._clear_local_lr_multiplier()
        self._add_lars(net, param_init_net, param, grad, self.lars)
        # WeightedSum adds lr * grad, so its lr must be negative; MomentumSGDUpdate subtracts
        lr_sign = -1 if self.momentum else 1
        lr, _ = self.build_lr(net, param_init_net,
                              base_learning_rate=self.base_learning_rate * lr_sign,
                              policy=self.policy, **self.init_kwargs)
        one = _one_blob(param_init_net)
        self._aux_params.shared.append(one)
        if self.momentum > 0:
            momentum_data = param_init_net.ConstantFill(param, str(param) + "_momentum", value=0.)
            self._aux_params.local.append(momentum_data)
        if isinstance(grad, core.GradientSlice):
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            if self.momentum > 0.:
                net.SparseMomentumSGDUpdate(
                    [grad.values, momentum_data, lr, param, grad.indices],
                    [grad.values, momentum_data, param],
                    momentum=self.momentum, nesterov=self.nesterov)
            else:
                net.ScatterWeightedSum([param, one, grad.indices, grad.values, lr], param)
        elif self.momentum > 0.:
            net.MomentumSGDUpdate([grad, momentum_data, lr, param], [grad, momentum_data, param],
                                  momentum=self.momentum, nesterov=self.nesterov)
        else:
            net.WeightedSum([param, one, grad, lr], param)

    def scale_learning_rate(self, scale):
        self.base_learning_rate *= scale


class MultiPrecisionSgdOptimizer(SgdOptimizer):
    """Momentum SGD of float16 params through their float32 master copies (params created with
    PseudoFP16Initializer); plain float32 params get ordinary SGD."""

    def __init__(self, base_learning_rate=0.1, momentum=0.0, policy="fixed", nesterov=1,
                 sparse_dedup_aggregator=None, **kwargs):
        super().__init__(base_learning_rate=base_learning_rate, policy=policy, momentum=momentum,
                         nesterov=nesterov, sparse_dedup_aggregator=sparse_dedup_aggregator,
                         **kwargs)

    def _run(self, net, param_init_net, param_info):
        param = param_info.blob
        param_fp32 = (param_info.blob_copy[core.DataType.FLOAT]
                      if param_info.blob_copy is not None else None)
        if param_fp32 is None:
            return SgdOptimizer._run(self, net, param_init_net, param_info)
        grad = param_info.grad
        if self.base_learning_rate == 0:
            return
        _check_positive_lr(type(self).__name__, self.base_learning_rate)
        if isinstance(grad, core.GradientSlice):
            raise ValueError("MultiPrecisionSgd does not support sparse gradients (%s)" % param)
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=-self.base_learning_rate,
                              policy=self.policy, **self.init_kwargs)
        momentum_data = param_init_net.ConstantFill(param_fp32, str(param) + "_momentum",
                                                    value=0.)
        self._aux_params.local.append(momentum_data)
        grad_fp32 = net.HalfToFloat(grad, grad + "_fp32")
        net.MomentumSGDUpdate([grad_fp32, momentum_data, lr, param_fp32],
                              [grad_fp32, momentum_data, param_fp32],
                              momentum=self.momentum, nesterov=self.nesterov)
        net.FloatToHalf(param_fp32, param)


class WeightDecayBuilder(Optimizer):
    """grad = 1 * grad + weight_decay * param (L2 regularization), applied before the update."""

    def __init__(self, weight_decay):
        # no instance number: weight decay blobs are named by device only (wd_0_0)
        self.weight_decay = weight_decay
        self._aux_params = AuxOptimizerParams(local=[], shared=[])
        self._lr_multiplier = None
        self._local_lr_multiplier = None

    def _run(self, net, param_init_net, param_info):
        dev = scope.CurrentDeviceScope()
        if dev is None:
            dev = core.DeviceOption(caffe2_pb2.CPU)
        one = _one_blob(param_init_net, with_node_name=False)
        wd = param_init_net.ConstantFill([], "wd_%d_%d" % (dev.device_type, dev.device_id),
                                         shape=[1], value=self.weight_decay)
        if isinstance(param_info.grad, core.GradientSlice):
            raise ValueError("weight decay does not support sparse gradients (%s)"
                             % param_info.name)
        net.WeightedSum([param_info.grad, one, param_info.blob, wd], param_info.grad)


class AdagradOptimizer(Optimizer):
    """Adagrad on dense gradients."""

    def __init__(self, alpha=0.01, epsilon=1e-4, decay=1, policy="fixed",
                 sparse_dedup_aggregator=None, rowWise=False, engine="", lars=None,
                 output_effective_lr=False, output_effective_lr_and_update=False, **kwargs):
        super().__init__()
        self.alpha = alpha
        self.epsilon = epsilon
        self.decay = decay
        self.policy = policy
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.rowWise = rowWise
        self.engine = engine
        self.lars = lars
        self.output_effective_lr = output_effective_lr
        self.output_effective_lr_and_update = output_effective_lr_and_update
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        self._clear_local_lr_multiplier()
        self._add_lars(net, param_init_net, param, grad, self.lars)
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=self.alpha,
                              policy=self.policy, **self.init_kwargs)
        if self.rowWise:
            # one squared-sum average per row of the param
            squared_sum = _rows_fill(param_init_net, param, str(param) + "_avg_squared_sum")
        else:
            squared_sum = param_init_net.ConstantFill([param], str(param) + "_squared_sum",
                                                      value=0.0)
        self._aux_params.local.append(squared_sum)
        if self.rowWise and not isinstance(grad, core.GradientSlice):
            raise ValueError("If SparseAdagrad with rowWise=True, gradient must be a "
                             "gradientslice: rowWise is not supported by dense Adagrad (%s)"
                             % param)
        if isinstance(grad, core.GradientSlice):
            if self.decay != 1:
                raise ValueError("Decay is not implemented for SparseAdagrad and must be set "
                                 "to 1")
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            op = "RowWiseSparseAdagrad" if self.rowWise else "SparseAdagrad"
            net.__getattr__(op)([param, squared_sum, grad.indices, grad.values, lr],
                                [param, squared_sum], epsilon=self.epsilon, engine=self.engine)
        else:
            outputs = [param, squared_sum]
            if self.output_effective_lr_and_update:
                outputs += [str(param) + "_effective_lr", str(param) + "_update"]
            elif self.output_effective_lr:
                outputs.append(str(param) + "_effective_lr")
            net.Adagrad([param, squared_sum, grad, lr], outputs,
                        epsilon=self.epsilon, decay=float(self.decay), engine=self.engine)

    def scale_learning_rate(self, scale):
        self.alpha *= scale


class AdamOptimizer(Optimizer):
    """Adam: Adam(param, m1, m2, grad, lr, iteration) with lr = -alpha * policy(iteration)."""

    def __init__(self, alpha=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, policy="fixed",
                 use_lr_adaption=False, lr_alpha=0.01, normalized_lr_adaption=True,
                 sparse_dedup_aggregator=None, rowWise=False, engine="", enableRAdam=False,
                 **kwargs):
        super().__init__()
        self.enableRAdam = enableRAdam
        self.alpha = alpha
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.policy = policy
        self.use_lr_adaption = use_lr_adaption
        self.lr_alpha = lr_alpha
        self.normalized_lr_adaption = normalized_lr_adaption
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.rowWise = rowWise
        self.engine = engine
        self.init_kwargs = kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, iteration = self.build_lr(net, param_init_net, base_learning_rate=self.alpha,
                                      policy=self.policy, **self.init_kwargs)
        m1 = param_init_net.ConstantFill([param], param + "_first_moment", value=0.0)
        if self.rowWise:
            m2 = _rows_fill(param_init_net, param, param + "_avg_second_moment")
        else:
            m2 = param_init_net.ConstantFill([param], param + "_second_moment", value=0.0)
        self._aux_params.shared.append(iteration)
        self._aux_params.local.append(m1)
        self._aux_params.local.append(m2)
        if self.rowWise and not isinstance(grad, core.GradientSlice):
            raise ValueError("If SparseAdam with rowWise=True, gradient must be a "
                             "gradientslice: rowWise is not supported by dense Adam (%s)" % param)
        output_blobs = [param, m1, m2]
        if self.use_lr_adaption:
            effective_grad = str(param) + "_effective_grad"
            output_blobs.append(effective_grad)
        if isinstance(grad, core.GradientSlice):
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            inputs = [param, m1, m2, grad.indices, grad.values, lr, iteration]
            if self.rowWise:
                if self.enableRAdam:
                    raise ValueError("RowWiseSparseAdam does not support RAdam (enableRAdam)")
                net.RowWiseSparseAdam(inputs, output_blobs, beta1=self.beta1, beta2=self.beta2,
                                      epsilon=self.epsilon)
            else:
                net.SparseAdam(inputs, output_blobs, beta1=self.beta1, beta2=self.beta2,
                               epsilon=self.epsilon, enableRAdam=self.enableRAdam)
            grad_values = grad.values
        else:
            net.Adam([param, m1, m2, grad, lr, iteration], output_blobs,
                     beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon)
            grad_values = grad
        if self.use_lr_adaption:
            net.LearningRateAdaption([lr, grad_values, effective_grad], [lr],
                                     lr_alpha=self.lr_alpha,
                                     normalized_lr_adaption=self.normalized_lr_adaption)

    def scale_learning_rate(self, scale):
        self.alpha *= scale


# -- building over a whole model ------------------------------------------------------------
def _get_param_to_device(model):
    """Each blob's device: that of the op writing it in net, overridden by param_init_net."""
    param_to_device = core.InferBlobDevices(model.net)
    param_to_device.update(core.InferBlobDevices(model.param_init_net))
    return param_to_device


def get_param_device(param_name, grad, param_to_device=None, default_device=None):
    """The DeviceOption the update of `param_name` runs under (from its or its grad's op)."""
    device = default_device
    param_to_device = param_to_device or {}
    if param_name in param_to_device:
        device = param_to_device[param_name]
    elif isinstance(grad, core.GradientSlice):
        for blob in (grad.values, grad.indices):
            if str(blob) in param_to_device:
                device = param_to_device[str(blob)]
                break
    elif grad is not None and str(grad) in param_to_device:
        device = param_to_device[str(grad)]
    if device is None:
        raise ValueError("cannot infer the device of parameter %r: no op creates it or its "
                         "gradient" % param_name)
    return device


def get_lr_injection():
    """The current lr_injection multiplier (build with allow_lr_injection=True)."""
    from food101.caffe2 import workspace
    return workspace.FetchBlob(_LEARNING_RATE_INJECTION)


def set_lr_injection(lr_injection_value):
    from food101.caffe2 import workspace
    workspace.FeedBlob(_LEARNING_RATE_INJECTION,
                       np.array([float(lr_injection_value)], dtype=np.float32))


def _calc_norm_ratio(model, params, name_scope, param_to_device, max_gradient_norm):
    """clip_norm / max(global gradient norm, clip_norm), a blob scaling every lr."""
    with core.NameScope(name_scope):
        grad_squared_sums = []
        for i, param in enumerate(params):
            device = get_param_device(str(param.blob), param.grad, param_to_device)
            with core.DeviceScope(device):
                grad = param.grad if not isinstance(param.grad, core.GradientSlice) \
                    else param.grad.values
                grad_squared_sums.append(
                    model.net.SumSqrElements(grad, "grad_{}_squared_sum".format(i)))
        with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
            full_sum = model.net.Sum(grad_squared_sums, "grad_squared_full_sum")
            global_norm = model.net.Pow(full_sum, "global_norm", exponent=0.5)
            clip_norm = model.param_init_net.ConstantFill([], "clip_norm", shape=[],
                                                          value=float(max_gradient_norm))
            max_norm = model.net.Max([global_norm, clip_norm], "max_norm")
            return model.net.Div([clip_norm, max_norm], "norm_ratio")


def _build(model, optimizer, weights_only=False, use_param_info_optim=True,
           max_gradient_norm=None, allow_lr_injection=False):
    param_to_device = _get_param_to_device(model)
    model.Validate()
    params = [info for info in model.GetOptimizationParamInfo()
              if not weights_only or info.blob in model.weights]
    lr_multiplier = None
    if max_gradient_norm is not None:
        lr_multiplier = _calc_norm_ratio(model, params, "norm_clipped_grad_update",
                                         param_to_device, max_gradient_norm)
    if allow_lr_injection:
        if not model.net.BlobIsDefined(_LEARNING_RATE_INJECTION):
            lr_injection = model.param_init_net.ConstantFill(
                [], _LEARNING_RATE_INJECTION, shape=[1], value=1.0)
        else:
            lr_injection = _LEARNING_RATE_INJECTION
        if lr_multiplier is None:
            lr_multiplier = lr_injection
        else:
            lr_multiplier = model.net.Mul([lr_multiplier, lr_injection], "lr_multiplier",
                                          broadcast=1)
    optimizer.add_lr_multiplier(lr_multiplier)
    for info in params:
        device = get_param_device(str(info.blob), info.grad, param_to_device)
        with core.DeviceScope(device):
            if info.optimizer and use_param_info_optim:
                info.optimizer(model.net, model.param_init_net, info)
            else:
                optimizer(model.net, model.param_init_net, info)
    return optimizer


def add_weight_decay(model, weight_decay):
    """L2 regularization of the WEIGHT-tagged params (conv/fc `_w`, spatial_bn `_s`) only:
    their gradients become grad + weight_decay * param before the optimizer's update."""
    _build(model, WeightDecayBuilder(weight_decay=weight_decay), weights_only=True,
           use_param_info_optim=False)


def build_sgd(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False,
              **kwargs):
    """SGD over every param with a gradient. kwargs: policy, momentum, nesterov (default 1),
    and the LearningRate policy's arguments (stepsize, gamma, power, max_iter, ...)."""
    return _build(model, SgdOptimizer(base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


def build_multi_precision_sgd(model, base_learning_rate, max_gradient_norm=None,
                              allow_lr_injection=False, **kwargs):
    return _build(model, MultiPrecisionSgdOptimizer(base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


def build_adagrad(model, base_learning_rate, parameters=None, max_gradient_norm=None,
                  allow_lr_injection=False, **kwargs):
    return _build(model, AdagradOptimizer(alpha=base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


def build_adam(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False,
               **kwargs):
    """Adam with alpha=base_learning_rate (beta1, beta2, epsilon, policy... as kwargs)."""
    return _build(model, AdamOptimizer(alpha=base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


# -- the rest of Caffe2's optimizer builders ---------------------------------------------------
class FtrlOptimizer(Optimizer):
    """FTRL-proximal; `alpha` is an argument of the Ftrl op (no LearningRate blob), as Caffe2."""

    def __init__(self, alpha=0.01, beta=1e-4, lambda1=0, lambda2=0,
                 sparse_dedup_aggregator=None, engine=""):
        super().__init__()
        self.alpha, self.beta, self.lambda1, self.lambda2 = alpha, beta, lambda1, lambda2
        self.sparse_dedup_aggregator = sparse_dedup_aggregator
        self.engine = engine

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        nz = param_init_net.ConstantFill([param], str(param) + "_ftrl_nz", extra_shape=[2],
                                         value=0.0)
        self._aux_params.local.append(nz)
        args = dict(engine=self.engine, alpha=self.alpha, beta=self.beta, lambda1=self.lambda1,
                    lambda2=self.lambda2)
        if isinstance(grad, core.GradientSlice):
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            net.SparseFtrl([param, nz, grad.indices, grad.values], [param, nz], **args)
        else:
            net.Ftrl([param, nz, grad], [param, nz], **args)

    def scale_learning_rate(self, scale):
        self.alpha *= scale


class RmsPropOptimizer(Optimizer):
    """RmsProp then MomentumSGDUpdate with the negative learning rate, as Caffe2 composes it."""

    def __init__(self, alpha=0.01, decay=0.9, momentum=0.0, epsilon=1e-5, policy="fixed",
                 engine="", **kwargs):
        super().__init__()
        self.alpha, self.decay, self.momentum, self.epsilon = alpha, decay, momentum, epsilon
        self.policy, self.engine, self.init_kwargs = policy, engine, kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            raise ValueError("RmsPropOptimizer: alpha must be positive, got %r" % self.alpha)
        if isinstance(grad, core.GradientSlice):
            raise ValueError("RmsPropOptimizer does not support sparse gradients (%s)"
                             % param_info.name)
        dev = scope.CurrentDeviceScope() or core.DeviceOption(caffe2_pb2.CPU)
        one = param_init_net.ConstantFill([], "ONE_%d_%d" % (dev.device_type, dev.device_id),
                                          shape=[1], value=1.0)
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=-self.alpha,
                              policy=self.policy, **self.init_kwargs)
        grad_o = param_init_net.ConstantFill([param], str(param) + "_grad_o", value=0.0)
        ms = param_init_net.ConstantFill([param], str(param) + "_mean_squares", value=0.0)
        mom = param_init_net.ConstantFill([param], str(param) + "_momentum", value=0.0)
        self._aux_params.local.extend([ms, mom])
        net.RmsProp([grad, ms, mom, one], [grad_o, ms, mom], decay=self.decay,
                    momentum=self.momentum, epsilon=self.epsilon, engine=self.engine)
        net.MomentumSGDUpdate([grad_o, mom, lr, param], [grad_o, mom, param])

    def scale_learning_rate(self, scale):
        self.alpha *= scale


class AdadeltaOptimizer(Optimizer):
    def __init__(self, alpha=0.01, epsilon=1e-4, decay=0.95, policy="fixed",
                 sparse_dedup_aggregator=None, engine="", **kwargs):
        super().__init__()
        self.alpha, self.epsilon, self.decay, self.policy = alpha, epsilon, decay, policy
        self.sparse_dedup_aggregator, self.engine, self.init_kwargs = \
            sparse_dedup_aggregator, engine, kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=self.alpha,
                              policy=self.policy, **self.init_kwargs)
        moment = param_init_net.ConstantFill([param], str(param) + "_squared_moment", value=0.0)
        delta = param_init_net.ConstantFill([param], str(param) + "_squared_moment_update",
                                            value=0.0)
        self._aux_params.local.extend([moment, delta])
        if isinstance(grad, core.GradientSlice):
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            net.SparseAdadelta([param, moment, delta, grad.indices, grad.values, lr],
                               [param, moment, delta], epsilon=self.epsilon, decay=self.decay,
                               engine=self.engine)
            return
        net.Adadelta([param, moment, delta, grad, lr], [param, moment, delta],
                     epsilon=self.epsilon, decay=self.decay, engine=self.engine)

    def scale_learning_rate(self, scale):
        self.alpha *= scale


class WngradOptimizer(Optimizer):
    def __init__(self, alpha=1.0, epsilon=1e-9, policy="fixed", sparse_dedup_aggregator=None,
                 engine="", moment_init=100.0, lars=None, output_effective_lr=False,
                 output_effective_lr_and_update=False, **kwargs):
        super().__init__()
        self.lars = lars
        self.output_effective_lr = output_effective_lr
        self.output_effective_lr_and_update = output_effective_lr_and_update
        self.alpha, self.epsilon, self.policy = alpha, epsilon, policy
        self.sparse_dedup_aggregator, self.engine = sparse_dedup_aggregator, engine
        self.moment_init, self.init_kwargs = moment_init, kwargs

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        self._clear_local_lr_multiplier()
        self._add_lars(net, param_init_net, param, grad, self.lars)
        lr, _ = self.build_lr(net, param_init_net, base_learning_rate=self.alpha,
                              policy=self.policy, **self.init_kwargs)
        moment = param_init_net.ConstantFill([], str(param) + "_moment", shape=[1],
                                             value=self.moment_init)
        self._aux_params.local.append(moment)
        if isinstance(grad, core.GradientSlice):
            grad = self.dedup(net, self.sparse_dedup_aggregator, grad)
            net.SparseWngrad([param, moment, grad.indices, grad.values, lr], [param, moment],
                             epsilon=self.epsilon, engine=self.engine)
            return
        outputs = [param, moment]
        if self.output_effective_lr_and_update:
            outputs += [str(param) + "_effective_lr", str(param) + "_update"]
        elif self.output_effective_lr:
            outputs.append(str(param) + "_effective_lr")
        net.Wngrad([param, moment, grad, lr], outputs, epsilon=self.epsilon, engine=self.engine)

    def scale_learning_rate(self, scale):
        self.alpha *= scale


def build_ftrl(model, engine="SIMD", **kwargs):
    if engine == "SIMD" and not (core.IsOperator("Ftrl_ENGINE_SIMD")
                                 and core.IsOperator("SparseFtrl_ENGINE_SIMD")):
        raise ValueError("build_ftrl: the SIMD Ftrl ops are not registered")
    return _build(model, FtrlOptimizer(engine=engine, **kwargs))


def build_rms_prop(model, base_learning_rate, max_gradient_norm=None, allow_lr_injection=False,
                   **kwargs):
    return _build(model, RmsPropOptimizer(alpha=base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


def build_adadelta(model, base_learning_rate, parameters=None, max_gradient_norm=None,
                   allow_lr_injection=False, **kwargs):
    return _build(model, AdadeltaOptimizer(alpha=base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


def build_wngrad(model, base_learning_rate, parameters=None, max_gradient_norm=None,
                 allow_lr_injection=False, **kwargs):
    return _build(model, WngradOptimizer(alpha=base_learning_rate, **kwargs),
                  max_gradient_norm=max_gradient_norm, allow_lr_injection=allow_lr_injection)


class GFtrlOptimizer(FtrlOptimizer):
    """Group-lasso FTRL (dense gradients): the GFtrl op with `alpha` as its argument; the same
    hyper-parameters and `nz` state as FtrlOptimizer."""

    def _run(self, net, param_init_net, param_info):
        param, grad = param_info.blob, param_info.grad
        if self.alpha <= 0:
            return
        nz = param_init_net.ConstantFill([param], str(param) + "_gftrl_nz", extra_shape=[2],
                                         value=0.0)
        self._aux_params.local.append(nz)
        net.GFtrl([param, nz, grad], [param, nz], engine=self.engine, alpha=self.alpha,
                  beta=self.beta, lambda1=self.lambda1, lambda2=self.lambda2)


def build_gftrl(model, engine="", **kwargs):
    if engine == "SIMD" and not core.IsOperator("GFtrl_ENGINE_SIMD"):
        raise ValueError("build_gftrl: the SIMD GFtrl op is not registered")
    return _build(model, GFtrlOptimizer(engine=engine, **kwargs))


def build_yellowfin(model, base_learning_rate=0.1, **kwargs):
    raise NotImplementedError("build_yellowfin: the YellowFin op is not supported by the project")
