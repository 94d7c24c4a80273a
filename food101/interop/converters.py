"""Converter tables: one small function per foreign op type, registered like the ops are.

    ONNX_EXPORT = ConverterTable("to_onnx", target="ONNX")          # in onnx_export.py

    @ONNX_EXPORT.converter("Relu", "Sigmoid")
    def _unary(w, op, args):            # w: the converting context, op: what is converted,
        ...                             # args: its arguments, parsed once

    fn = ONNX_EXPORT.lookup(op.type, where="op #3 of net 'squeezenet'")

Every direction (Caffe2 -> ONNX export, ONNX -> Caffe2 import, Caffe -> Caffe2 translation)
keeps its own table and registers into it with the same decorator, as `@operator` does for the
op registry: a name registered twice is an error when the module loads, and an op no converter
handles raises UnknownConverterError naming the op, where it is and the closest names.
"""
from food101.caffe2.errors import Caffe2Error, closest


class UnknownConverterError(Caffe2Error):
    """An op type that the table has no converter for."""


class ConverterTable:
    """{op type: converter function} for one conversion direction."""

    def __init__(self, name, target):
        self.name = name          # e.g. "to_onnx": which conversion failed
        self.target = target      # e.g. "ONNX": what the converters produce
        self._converters = {}

    def converter(self, *op_types):
        """Decorator: `fn` converts each of `op_types`."""
        if not op_types:
            raise ValueError("%s: @converter needs at least one op type" % self.name)

        def register(fn):
            for op_type in op_types:
                if op_type in self._converters:
                    raise ValueError("%s: a converter for %r is registered twice (%s and %s)"
                                     % (self.name, op_type,
                                        self._converters[op_type].__qualname__, fn.__qualname__))
                self._converters[op_type] = fn
            return fn
        return register

    def lookup(self, op_type, where=None):
        """The converter of `op_type`. UnknownConverterError otherwise, naming `where` (e.g.
        "op #3 Exp (['x'] -> ['y'])"; default: the op type), the closest names and all."""
        try:
            return self._converters[op_type]
        except KeyError:
            hint = closest(op_type, self._converters)
            raise UnknownConverterError("%s: %s has no %s mapping%s; supported: %s" % (
                self.name, where or repr(op_type), self.target,
                " (closest: %s)" % ", ".join(hint) if hint else "",
                ", ".join(self.names()))) from None

    def __contains__(self, op_type):
        return op_type in self._converters

    def names(self):
        return sorted(self._converters)


def converter(table, *op_types):
    """`@converter(TABLE, "Conv")`: the same registration as `@TABLE.converter("Conv")`."""
    return table.converter(*op_types)


__all__ = ["ConverterTable", "UnknownConverterError", "converter"]
