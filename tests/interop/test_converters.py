"""interop.converters: one registration rule for every conversion table."""
import pytest

from food101.interop.converters import ConverterTable, UnknownConverterError, converter
from food101.interop.onnx_export import ONNX_EXPORT


def test_a_name_registered_twice_is_an_error_naming_both_functions():
    table = ConverterTable("to_test", target="TEST")

    @table.converter("Relu", "Sigmoid")
    def first(w, op, args):
        return "first"

    with pytest.raises(ValueError, match=r"'Sigmoid' is registered twice \(.*first and .*second\)"):
        @converter(table, "Sigmoid")
        def second(w, op, args):
            return "second"
    assert table.lookup("Sigmoid") is first and table.names() == ["Relu", "Sigmoid"]


def test_an_unknown_op_names_where_it_is_and_the_closest_converters():
    with pytest.raises(UnknownConverterError, match=r"to_onnx: op #4 MaxPool2 \(\['x'\] -> \['y'\]\) has "
                                                    r"no ONNX mapping \(closest: MaxPool.*\); supported: Add, "):
        ONNX_EXPORT.lookup("MaxPool2", "op #4 MaxPool2 (['x'] -> ['y'])")


def test_onnx_export_covers_the_squeezenet_ops():
    assert {"Conv", "Relu", "MaxPool", "AveragePool", "Concat", "Dropout", "Softmax"} <= set(ONNX_EXPORT.names())
