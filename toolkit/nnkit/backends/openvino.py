"""OpenVINO (package ``openvino``) on the CPU device: the ``openvino`` backend.

The ONNX file is read with ``Core.read_model`` and compiled for ``CPU`` with the latency
hint, in fp32 (``INFERENCE_PRECISION_HINT``: on CPUs with AMX or avx512_bf16 OpenVINO
would otherwise compute in bf16 and fail parity for a reason that is not the model's).
Dynamic dimensions stay dynamic: the CPU plugin compiles them as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend
from nnkit.errors import BackendError


def _ov() -> Any:
    return import_runtime("openvino", "openvino")


class OpenVINOBackend(Backend):
    """OpenVINO's CPU plugin; ``threads`` sets ``INFERENCE_NUM_THREADS``.

    Inputs are passed in shared memory (``share_inputs``), as OpenVINO recommends for
    latency; :meth:`run` copies the outputs (they alias the request's buffers), the
    timed :meth:`run_prepared` does not.
    """

    name: ClassVar[str] = "openvino"
    requirement: ClassVar[str] = REQUIREMENTS["openvino"]
    #: The OpenVINO device this backend compiles for.
    device: ClassVar[str] = "CPU"

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        self.compiled: Any = None
        self.request: Any = None
        self._ports: list[Any] = []

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
        model = core.read_model(str(self.path))
        self.compiled = core.compile_model(model, self.device, self.config())
        self.request = self.compiled.create_infer_request()
        ports = list(self.compiled.outputs)
        # Outputs by the names the ONNX file declares; by position where a name is lost.
        by_name = {n: p for p in ports for n in p.get_names()}
        self._ports = [
            by_name.get(out.name, ports[i] if i < len(ports) else None)
            for i, out in enumerate(self.outputs)
        ]
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

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(arr) for name, arr in feeds.items()}

    def run_prepared(self, prepared: Any) -> Any:
        # OpenVINO's latency advice: inputs in shared memory, no copy in or out.
        return self.request.infer(prepared, share_inputs=True, share_outputs=True)

    def fetch(self, result: Any) -> dict[str, np.ndarray]:
        return {
            out.name: np.array(result[port], copy=True)
            for out, port in zip(self.outputs, self._ports, strict=True)
        }

    def run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer(feeds, share_inputs=True)
        # Copy: the results can alias the request's buffers, overwritten by the next run.
        return {
            out.name: np.array(result[port], copy=True)
            for out, port in zip(self.outputs, self._ports, strict=True)
        }

    def close_impl(self) -> None:
        self.request = None
        self.compiled = None
        self._ports = []
