"""OpenVINO (package ``openvino``) on the CPU device: the ``openvino`` backend.

The ONNX file is read with ``Core.read_model`` and compiled for ``CPU`` with the latency
hint, in fp32 (``INFERENCE_PRECISION_HINT``: on CPUs with AMX or avx512_bf16 OpenVINO
would otherwise compute in bf16 and fail parity for a reason that is not the model's).
Dynamic dimensions stay dynamic: the CPU plugin compiles them as they are.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend
from nnkit.errors import BackendError


def _ov() -> Any:
    return import_runtime("openvino", "openvino")


def _ov_types() -> dict[str, Any]:
    """nnkit's name -> OpenVINO's element type, for the dtypes numpy lacks."""
    t = _ov().Type
    return {
        "bfloat16": t.bf16,
        "float8_e4m3fn": t.f8e4m3,
        "float8_e5m2": t.f8e5m2,
        "float8_e8m0fnu": t.f8e8m0,
        "float4_e2m1fn": t.f4e2m1,
        "int4": t.i4,
        "uint4": t.u4,
        "uint2": t.u2,
    }


def _ov_dtypes() -> dict[str, str]:
    """OpenVINO's type name (``bf16``) -> nnkit's name, for the dtypes numpy lacks."""
    return {t.get_type_name(): name for name, t in _ov_types().items()}


class OpenVINOBackend(Backend[dict[str, Any], Any]):
    """OpenVINO's CPU plugin; ``threads`` sets ``INFERENCE_NUM_THREADS``.

    Inputs and outputs are passed in shared memory (``share_inputs``,
    ``share_outputs``), as OpenVINO recommends for latency: the timed
    :meth:`run_prepared` copies nothing, and :meth:`fetch` copies the outputs (they
    alias the request's buffers, which the next run overwrites).
    """

    name: ClassVar[str] = "openvino"
    requirement: ClassVar[str] = REQUIREMENTS["openvino"]
    #: The OpenVINO device this backend compiles for.
    openvino_device: ClassVar[str] = "CPU"

    #: The compiled model and its infer request, while loaded.
    compiled: Any = None
    request: Any = None
    #: The compiled model's output port of each output, in order (set by ``load``).
    _ports: tuple[Any, ...] = ()

    @classmethod
    def probe(cls) -> str:
        return run_probe(cls, _ov().get_version())

    def config(self) -> dict[str, Any]:
        """The properties passed to ``compile_model``."""
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return config

    def load_impl(self) -> None:
        ov = _ov()
        core = ov.Core()
        model = core.read_model(str(self.runtime_path))
        self.compiled = core.compile_model(model, self.openvino_device, self.config())
        self.request = self.compiled.create_infer_request()
        ports = list(self.compiled.outputs)
        # Outputs by the names the ONNX file declares; by position where a name is lost.
        by_name = {n: p for p in ports for n in p.get_names()}
        self._ports = tuple(
            by_name.get(out.name, ports[i] if i < len(ports) else None)
            for i, out in enumerate(self.outputs)
        )
        if None in self._ports:
            raise self.error(
                f"cannot load {self.path}",
                ValueError(
                    f"OpenVINO gives {len(ports)} outputs, the file declares {len(self.outputs)}"
                ),
            )

    def error(self, what: str, cause: BaseException) -> BackendError:
        """OpenVINO's messages open with source locations and end with the reason: keep that."""
        lines = [ln.strip(" -") for ln in str(cause).splitlines() if ln.strip(" -")]
        if len(lines) < 2:
            return super().error(what, cause)
        return BackendError(
            f"{self.name}: {what}: {lines[-1]}", backend=self.name, model_path=str(self.path)
        )

    def prepare_impl(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """The feeds as OpenVINO takes them in shared memory: C-contiguous and writeable
        (rank kept: a scalar stays a scalar), strings as ``<U``, the dtypes numpy lacks
        as ``ov.Tensor`` objects of OpenVINO's own type (4-bit ones packed)."""
        return {name: self._tensor(name, value) for name, value in feeds.items()}

    def _tensor(self, name: str, value: Any) -> Any:
        from nnkit.values import LOW_PRECISION, is_string_array, pack_bits

        if value is None or isinstance(value, list):
            kind = "an empty optional" if value is None else "a sequence"
            raise BackendError(
                f"{self.name}: input {name!r} is {kind}: OpenVINO takes tensors only",
                backend=self.name,
                model_path=str(self.path),
            )
        dtype = str(value.dtype)
        if value.dtype.kind == "O" and is_string_array(value):
            return np.array(value.tolist(), dtype=str).reshape(value.shape)
        if dtype not in LOW_PRECISION:
            return np.require(value, requirements=["C", "W"])
        ov_type = _ov_types().get(dtype)
        if ov_type is None:
            raise BackendError(
                f"{self.name}: input {name!r} is {dtype}, which OpenVINO has no type for",
                backend=self.name,
                model_path=str(self.path),
            )
        bits = pack_bits(value) if LOW_PRECISION[dtype] < 8 else np.array(value).view(np.uint8)
        return _ov().Tensor(np.require(bits, requirements=["C", "W"]), list(value.shape), ov_type)

    def run_prepared(self, prepared: dict[str, Any]) -> Any:
        # OpenVINO's latency advice: inputs in shared memory, no copy in or out.
        return self.request.infer(prepared, share_inputs=True, share_outputs=True)

    def fetch(self, result: Any) -> dict[str, Any]:
        return {
            out.name: self._output(result, port)
            for out, port in zip(self.outputs, self._ports, strict=True)
        }

    def _output(self, result: Any, port: Any) -> np.ndarray:
        """One output, copied (it can alias the request's buffers, overwritten by the next
        run); a type numpy lacks read from its bits with the port's OpenVINO type."""
        from nnkit.values import from_bits

        dtype = _ov_dtypes().get(port.get_element_type().get_type_name())
        if dtype is None:
            return np.array(result[port], copy=True)
        tensor = self.request.get_tensor(port)
        return from_bits(np.array(tensor.data, copy=True), dtype, list(tensor.shape))

    def close_impl(self) -> None:
        self.request = None
        self.compiled = None
        self._ports = ()
