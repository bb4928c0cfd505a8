"""The rewrites themselves: each a kept library's call, an ONNX model in, a new one out.

Each function takes the base model (a :class:`onnx.ModelProto` it may change) and
returns the rewritten model and the settings it used (the provenance stamped into the
file). Nothing here writes a file: :func:`nnkit.rewrites.rewrite_file` does, checked and
atomically. The libraries are imported inside each function, so a missing one fails
only the rewrite that needs it (and :func:`nnkit.rewrites.require_tools` says so
before a run starts).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

#: Level of onnxruntime's offline optimization (``optimized``): fusions beyond the
#: basic, portable ones (``FusedConv``, ``FusedGemm`` in the ``com.microsoft`` domain),
#: what an onnxruntime user ships. Other runtimes cannot load those ops: their cells are
#: ``unsupported``, saying so.
OPTIMIZATION_LEVEL = "ORT_ENABLE_EXTENDED"

Settings = dict[str, Any]


def slim(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Settings]:
    """onnxslim: constant folding, dead-node removal and pattern fusions, standard ops only.

    onnxslim, not onnxsim: it is pure Python on top of onnx (no native build to match
    an onnx or protobuf version; onnxsim's wheels pin their own onnxruntime build), it
    is released often, and it keeps dynamic dims symbolic unless told the shapes.
    """
    import onnxslim

    settings: Settings = {"model_check": False}
    return onnxslim.slim(model, **settings), settings


def optimized(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Settings]:
    """onnxruntime's offline optimization: the graph a CPU session would run, saved.

    ``SessionOptions.optimized_model_filepath`` at :data:`OPTIMIZATION_LEVEL` with the
    CPU provider (a graph optimized for another provider may hold that provider's ops).
    """
    import onnx
    import onnxruntime as ort

    level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVEL)
    with tempfile.TemporaryDirectory(prefix="nnkit-optimized-") as tmp:
        src, out = Path(tmp) / "base.onnx", Path(tmp) / "optimized.onnx"
        onnx.save(model, str(src))
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(out)
        options.log_severity_level = 3
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        result = onnx.load(str(out))
    return result, {"graph_optimization_level": OPTIMIZATION_LEVEL, "provider": "cpu"}


def fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Settings]:
    """float16 weights and compute, float32 inputs and outputs kept (``keep_io_types``).

    onnxruntime's transformer tools (``OnnxModel.convert_float_to_float16``, which wraps
    ``onnxruntime.transformers.float16``): no extra dependency, and unlike the bare
    converter it leaves the graph topologically sorted (the converter appends its input
    casts at the end, which the checker refuses).
    """
    from onnxruntime.transformers.onnx_model import OnnxModel

    settings: Settings = {"keep_io_types": True, "use_symbolic_shape_infer": False}
    wrapped = OnnxModel(model)
    wrapped.convert_float_to_float16(**settings)
    wrapped.topological_sort()
    return wrapped.model, settings


def int8_dynamic(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Settings]:
    """``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations
    quantized at run time (QOperator ops: ``MatMulInteger``, ``DynamicQuantizeLSTM``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings: Settings = {"weight_type": "QInt8", "per_channel": False}
    with _quantizing(model) as (src, out):
        quantize_dynamic(src, out, weight_type=QuantType.QInt8, per_channel=False)
        return _load(out), settings


def int8_static(
    model: onnx.ModelProto, calibration: Sequence[Mapping[str, np.ndarray]]
) -> tuple[onnx.ModelProto, Settings]:
    """``onnxruntime.quantization.quantize_static``, QDQ format, int8 activations and
    weights, MinMax calibration over ``calibration`` (inputs drawn apart from the test
    inputs; see :data:`nnkit.rewrites.CALIBRATION_SEEDS`)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        """The calibration inputs, one feed dict per call, then None."""

        def __init__(self) -> None:
            self.feeds: Iterator[Mapping[str, np.ndarray]] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed = next(self.feeds, None)
            return None if feed is None else dict(feed)

    settings: Settings = {
        "quant_format": "QDQ",
        "activation_type": "QInt8",
        "weight_type": "QInt8",
        "calibrate_method": "MinMax",
        "calibration_samples": len(calibration),
    }
    with _quantizing(model) as (src, out):
        quantize_static(
            src,
            out,
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return _load(out), settings


@contextlib.contextmanager
def _quantizing(model: onnx.ModelProto) -> Iterator[tuple[str, str]]:
    """The base model saved for a quantizer, without its intermediate shape hints, and
    where the quantizer writes.

    The hints change no value, but the quantizer refuses a file whose hints disagree
    with its own shape inference (the dynamo exporter's do, on CombinedNN).
    """
    import onnx

    from nnkit.onnxfile import strip_value_info

    strip_value_info(model)
    with tempfile.TemporaryDirectory(prefix="nnkit-quantize-") as tmp:
        src, out = Path(tmp) / "base.onnx", Path(tmp) / "quantized.onnx"
        onnx.save(model, str(src))
        yield str(src), str(out)


def _load(path: str) -> onnx.ModelProto:
    import onnx

    return onnx.load(path)
