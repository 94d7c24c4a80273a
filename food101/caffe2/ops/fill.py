"""Fill ops: make a tensor from arguments (ConstantFill, GivenTensor*Fill) or from the RNG
(XavierFill, MSRAFill, GaussianFill, UniformFill, UniformIntFill).

Every fill takes Caffe2's shape conventions (filler_op.h):

    no input              output shape = `shape`
    input X               output shape = X.shape + `extra_shape`     (`shape` must be unset)
    input X, input_as_shape=1
                          output shape = the values of X (1-D int64) + `extra_shape`

Outputs go to the op's device; random fills draw from the workspace's generator for that
device, so an init net run twice with the same seed gives the same parameters. Fills have no
gradient.
"""
import numpy as np
import torch

from food101.caffe2.errors import enforce
from food101.caffe2.ops.registry import operator

# caffe2_pb2.TensorProto.DataType -> torch dtype (STRING is kept as a numpy object array).
FLOAT, INT32, BYTE, STRING, BOOL, UINT8, INT8, UINT16, INT16, INT64, FLOAT16, DOUBLE = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13)
TORCH_DTYPES = {
    FLOAT: torch.float32, INT32: torch.int32, BYTE: torch.uint8, BOOL: torch.bool,
    UINT8: torch.uint8, INT8: torch.int8, UINT16: torch.uint16, INT16: torch.int16,
    INT64: torch.int64, FLOAT16: torch.float16, DOUBLE: torch.float64,
}
DTYPE_NAMES = {"FLOAT": FLOAT, "INT32": INT32, "BYTE": BYTE, "STRING": STRING, "BOOL": BOOL,
               "UINT8": UINT8, "INT8": INT8, "UINT16": UINT16, "INT16": INT16, "INT64": INT64,
               "FLOAT16": FLOAT16, "DOUBLE": DOUBLE}
# What ConstantFill accepts (Caffe2 throws "Unexpected 'dtype' argument value" for others).
CONSTANT_FILL_DTYPES = (FLOAT, DOUBLE, BOOL, INT8, INT16, INT32, INT64, UINT8, UINT16, STRING)


def data_type(value, what="dtype"):
    """A DataType enum from an int or its name ("FLOAT", "int64"), as Caffe2's cast helper."""
    if isinstance(value, str):
        enforce(value.upper() in DTYPE_NAMES, "%s=%r is not a TensorProto.DataType name (%s)"
                % (what, value, ", ".join(DTYPE_NAMES)))
        return DTYPE_NAMES[value.upper()]
    enforce(value in TORCH_DTYPES or value == STRING,
            "%s=%r is not a supported TensorProto.DataType" % (what, value))
    return int(value)


def output_shape(X, shape, extra_shape, input_as_shape):
    """The fill's output shape under Caffe2's rules (see the module docstring)."""
    enforce(isinstance(shape, (list, tuple)), "fill: 'shape' argument was a scalar (%r), list "
            "expected" % (shape,))
    extra = list(extra_shape) if isinstance(extra_shape, (list, tuple)) else [extra_shape]
    if X is None:
        enforce(not extra, "fill: cannot set extra_shape when there is no input")
        enforce(not input_as_shape, "fill: an input must be given if input_as_shape is true")
        return tuple(int(d) for d in shape)
    enforce(not shape, "fill: cannot set the shape argument (%s) and pass in an input at the "
            "same time" % (list(shape),))
    if input_as_shape:
        enforce(isinstance(X, torch.Tensor) and X.dim() == 1 and X.numel() > 0
                and not X.is_floating_point(),
                "fill: with input_as_shape=1 the input must be a non-empty 1-D int64 tensor of "
                "dimensions, got %s" % (_describe(X),))
        dims = [int(d) for d in X.tolist()]
    else:
        dims = list(X.shape)
    return tuple(dims + [int(d) for d in extra])


def _describe(X):
    if isinstance(X, torch.Tensor):
        return "%s tensor of shape %s" % (str(X.dtype).replace("torch.", ""), list(X.shape))
    return type(X).__name__


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# --------------------------------------------------------------------------------------
# Constant and given values
# --------------------------------------------------------------------------------------
@operator("ConstantFill", grad_inputs=(), context=True)
def constant_fill(X=None, *, shape=(), extra_shape=(), input_as_shape=0, value=None,
                  dtype=None, ctx):
    """Every element = value. Without `dtype` the type follows `value`: a float argument gives
    FLOAT, an integer argument INT64 (so ConstantFill(value=1) is int64, as in Caffe2)."""
    size = output_shape(X, shape, extra_shape, input_as_shape)
    if dtype is None:
        enforce(not isinstance(value, (str, bytes)), "ConstantFill: argument 'value' is of "
                "unexpected type (a string needs dtype=STRING)")
        dtype = INT64 if isinstance(value, int) else FLOAT
    dtype = data_type(dtype)
    enforce(dtype in CONSTANT_FILL_DTYPES, "ConstantFill: unexpected 'dtype' argument value %d"
            % dtype)
    if dtype == STRING:
        text = value if isinstance(value, (str, bytes)) else ""
        return _string_array([text] * _numel(size), size)
    value = 0 if value is None else value
    torch_dtype = TORCH_DTYPES[dtype]
    if not torch_dtype.is_floating_point and torch_dtype != torch.bool:
        enforce(float(value) == int(value), "ConstantFill: value %r cannot be represented in "
                "dtype %s" % (value, str(torch_dtype).replace("torch.", "")))
        value = int(value)
    return torch.full(size, value, dtype=torch_dtype, device=ctx.device)


def _given_values(dtype):
    """prepare hook factory: turn the `values` list into a CPU tensor once, at CreateNet.
    Only the float variant honours a `dtype` argument; Caffe2's typed variants ignore it."""
    def prepare(kwargs):
        out_dtype = dtype
        if dtype == FLOAT and kwargs.get("dtype") is not None:
            out_dtype = data_type(kwargs["dtype"])
        values = kwargs["values"]
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if out_dtype == STRING:
            kwargs["values"] = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
        else:
            kwargs["values"] = torch.tensor(values, dtype=TORCH_DTYPES[out_dtype])
        kwargs["dtype"] = out_dtype
        return kwargs
    return prepare


def _given_tensor_fill(X, shape, extra_shape, input_as_shape, values, ctx):
    size = output_shape(X, shape, extra_shape, input_as_shape)
    count = len(values)
    enforce(_numel(size) == count, "%s: shape %s holds %d values, but 'values' has %d"
            % (ctx.op.type, list(size), _numel(size), count))
    if not isinstance(values, torch.Tensor):  # strings
        return _string_array(values, size)
    # a copy: the prepared values must not alias a blob that later ops might rebind or write
    return values.reshape(size).to(ctx.device, copy=True)


def _string_array(items, size):
    array = np.empty(len(items), dtype=object)
    array[:] = [v.encode("utf-8") if isinstance(v, str) else v for v in items]
    return array.reshape(size)


def _register_given_tensor_fill(op_type, dtype, doc):
    def given_tensor_fill(X=None, *, values=(), shape=(), extra_shape=(), input_as_shape=0,
                          dtype=None, ctx):
        return _given_tensor_fill(X, shape, extra_shape, input_as_shape, values, ctx)
    given_tensor_fill.__name__ = "given_tensor_fill_%s" % op_type
    given_tensor_fill.__doc__ = doc
    operator(op_type, grad_inputs=(), context=True, prepare=_given_values(dtype))(given_tensor_fill)


_register_given_tensor_fill("GivenTensorFill", FLOAT,
                            "float32 `values` in `shape` (the Model Zoo's init_net format); a "
                            "`dtype` argument picks another type, as in Caffe2.")
_register_given_tensor_fill("GivenTensorDoubleFill", DOUBLE, "float64 `values` in `shape`.")
_register_given_tensor_fill("GivenTensorIntFill", INT32, "int32 `values` in `shape`.")
_register_given_tensor_fill("GivenTensorInt16Fill", INT16, "int16 `values` in `shape`.")
_register_given_tensor_fill("GivenTensorInt64Fill", INT64, "int64 `values` in `shape`.")
_register_given_tensor_fill("GivenTensorBoolFill", BOOL, "bool `values` (ints) in `shape`.")
_register_given_tensor_fill("GivenTensorStringFill", STRING,
                            "byte strings in `shape`, a numpy object array (Caffe2 keeps "
                            "std::string tensors on the host).")


def _byte_string_values(kwargs):
    values = kwargs["values"]
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    enforce(len(values) == 1, "GivenTensorByteStringToUInt8Fill: 'values' must hold exactly one "
            "byte string, got %d" % len(values))
    enforce(kwargs.get("dtype") in (None, STRING, "STRING"), "GivenTensorByteStringToUInt8Fill: "
            "unexpected 'dtype' argument value %r (only STRING)" % (kwargs.get("dtype"),))
    raw = values[0].encode("utf-8") if isinstance(values[0], str) else bytes(values[0])
    # The registry decodes valid UTF-8 to str; encoding it again restores the exact bytes.
    kwargs["values"] = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else \
        torch.empty(0, dtype=torch.uint8)
    return kwargs


@operator("GivenTensorByteStringToUInt8Fill", grad_inputs=(), context=True,
          prepare=_byte_string_values)
def given_tensor_byte_string_fill(X=None, *, values=(), shape=(), extra_shape=(),
                                  input_as_shape=0, dtype=None, ctx):
    """One byte string in `values` -> its bytes as a uint8 tensor of `shape`."""
    return _given_tensor_fill(X, shape, extra_shape, input_as_shape, values, ctx)


# --------------------------------------------------------------------------------------
# Random fills
# --------------------------------------------------------------------------------------
def _empty(size, ctx, dtype=torch.float32):
    return torch.empty(size, dtype=dtype, device=ctx.device)


@operator("UniformFill", grad_inputs=(), context=True)
def uniform_fill(X=None, MIN=None, MAX=None, *, shape=(), extra_shape=(), input_as_shape=0,
                 min=None, max=None, ctx):
    """Uniform in [min, max) (defaults 0 and 1). With three inputs, min and max come from the
    scalar blobs MIN and MAX; min > max then gives an empty first dimension, as in Caffe2."""
    size = output_shape(X, shape, extra_shape, input_as_shape)
    if MIN is not None or MAX is not None:
        enforce(MIN is not None and MAX is not None, "UniformFill: give both min and max blobs")
        enforce(min is None and max is None, "UniformFill: cannot set both min/max arguments and "
                "min/max input blobs")
        enforce(MIN.numel() == 1 and MAX.numel() == 1, "UniformFill: min and max blobs must be "
                "scalars, got %s and %s" % (_describe(MIN), _describe(MAX)))
        low, high = float(MIN.reshape(-1)[0]), float(MAX.reshape(-1)[0])
        if low > high:
            return _empty((0,) + tuple(size[1:]), ctx)
    else:
        low = 0.0 if min is None else float(min)
        high = 1.0 if max is None else float(max)
        enforce(low < high, "UniformFill: max (%g) must be bigger than min (%g)" % (high, low))
    return _empty(size, ctx).uniform_(low, high, generator=ctx.generator)


@operator("UniformIntFill", grad_inputs=(), context=True)
def uniform_int_fill(X=None, MIN=None, MAX=None, *, shape=(), extra_shape=(),
                     input_as_shape=0, min=None, max=None, ctx):
    """int32 uniform in [min, max], both ends included (std::uniform_int_distribution)."""
    size = output_shape(X, shape, extra_shape, input_as_shape)
    if MIN is not None or MAX is not None:
        enforce(MIN is not None and MAX is not None, "UniformIntFill: give both min and max blobs")
        low, high = int(MIN.reshape(-1)[0]), int(MAX.reshape(-1)[0])
        if low > high:
            return _empty((0,) + tuple(size[1:]), ctx, torch.int32)
    else:
        low = 0 if min is None else int(min)
        high = 1 if max is None else int(max)
        enforce(low < high, "UniformIntFill: max (%d) must be bigger than min (%d)" % (high, low))
    return torch.randint(low, high + 1, size, dtype=torch.int32, device=ctx.device,
                         generator=ctx.generator)


@operator("GaussianFill", grad_inputs=(), context=True)
def gaussian_fill(X=None, *, shape=(), extra_shape=(), input_as_shape=0, mean=0.0, std=1.0, ctx):
    """Normal(mean, std)."""
    size = output_shape(X, shape, extra_shape, input_as_shape)
    enforce(std >= 0, "GaussianFill: std must be non-negative, got %g" % std)
    return _empty(size, ctx).normal_(float(mean), float(std), generator=ctx.generator)


@operator("XavierFill", grad_inputs=(), context=True)
def xavier_fill(X=None, *, shape=(), extra_shape=(), input_as_shape=0, ctx):
    """Uniform(-s, s), s = sqrt(3 / fan_in), fan_in = numel // shape[0] (Caffe2's variant:
    no fan_out term, unlike Glorot's)."""
    size = output_shape(X, shape, extra_shape, input_as_shape)
    enforce(len(size) >= 1, "XavierFill: needs at least one dimension, got shape %s"
            % (list(size),))
    out = _empty(size, ctx)
    if out.numel() == 0:
        return out
    scale = float(np.sqrt(np.float32(3) / np.float32(out.numel() // size[0])))
    return out.uniform_(-scale, scale, generator=ctx.generator)


@operator("MSRAFill", grad_inputs=(), context=True)
def msra_fill(X=None, *, shape=(), extra_shape=(), input_as_shape=0, ctx):
    """Normal(0, s), s = sqrt(2 / fan_out), fan_out = numel // shape[1] (= out_channels * kh * kw
    for an OIHW conv weight)."""
    size = output_shape(X, shape, extra_shape, input_as_shape)
    enforce(len(size) >= 2, "MSRAFill: needs at least two dimensions, got shape %s" % (list(size),))
    out = _empty(size, ctx)
    if out.numel() == 0:
        return out
    scale = float(np.sqrt(np.float32(2) / np.float32(out.numel() // size[1])))
    return out.normal_(0.0, scale, generator=ctx.generator)
