"""onnxruntime: the ``cpu``, ``cuda`` and ``tensorrt`` backends, one execution provider each.

onnxruntime-gpu lists CUDA and TensorRT as available even where their libraries cannot
load, then silently runs on the CPU (onnxruntime#23372). nnkit never does: after creating
a session it reads the providers the session actually got and, when the one asked for
is not first, raises :class:`~nnkit.errors.BackendUnavailableError` naming the library
that did not load (read from onnxruntime's own log, captured at the file-descriptor
level so the terminal stays clean) and whether a GPU is present at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend, contiguous, fetched
from nnkit.errors import BackendError, BackendUnavailableError
from nnkit.values import LOW_PRECISION, from_bits, is_low_precision, onnx_elem_type, pack_bits

#: onnxruntime's own severity for its session log: 3 = errors only.
_SESSION_LOG_SEVERITY = 3
#: "Failed to load library .../libonnxruntime_providers_cuda.so with error: libX.so.13: cannot open"
_LIB_FAILED = re.compile(
    r"Failed to load library \S*?libonnxruntime_providers_(\w+)\.so with error: ([^\n]+)"
)
_MISSING_SO = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")
_REQUIRES = re.compile(r"Require (.+?)\. Please")


#: A kernel that failed at run time, in the exception or onnxruntime's log line.
_KERNEL_FAILED = re.compile(
    r"Non-zero status code returned while running (\S+) node\. Name:'([^']*)' "
    r"Status Message: (.+)"
)
#: The source location that opens a status message: ``/onnxruntime_src/...h:91 Fn(...) x
#: was false.`` (the words after it say what went wrong).
_WHERE_IN_SOURCE = re.compile(r"^\S+\.(?:h|cc|cpp|cu):\d+ (?:.*? was false\. )?")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _is_ortvalue(value: Any) -> bool:
    return type(value).__name__ == "OrtValue"


def _host_value(value: Any) -> Any:
    """An OrtValue (on any device) as a value: an array, or None for an empty optional.

    Tensors of the dtypes numpy lacks are read from their bytes (``data_ptr``), on the
    host, and unpacked (int4, float4 ... are two values a byte in onnxruntime).
    """
    from nnkit.check import onnx_dtype_name

    if not value.has_value():
        return None
    if not value.is_tensor():
        raise BackendError(
            f"onnxruntime gave a {value.data_type()}, which nnkit reads only as a tensor "
            "beside tensors of a dtype numpy lacks",
            backend="cpu",
        )
    dtype = onnx_dtype_name(value.element_type())
    if not is_low_precision(dtype):
        return value.numpy()
    if value.device_name().lower() != "cpu":
        host = _ort().OrtValue.ortvalue_from_shape_and_type(
            value.shape(), value.element_type(), "cpu", 0
        )
        host.update_inplace(value)
        value = host
    raw = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes())
    return from_bits(raw, dtype, value.shape())


def _ort(backend: str = "cpu") -> Any:
    return import_runtime(backend, "onnxruntime")


def ort_distribution() -> str:
    """Which onnxruntime distribution is installed: ``onnxruntime-gpu``, ``onnxruntime`` ..."""
    import importlib.metadata as md

    for dist in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            continue
        return dist
    return "onnxruntime"


class OnnxRuntimeBackend(Backend):
    """An onnxruntime session with exactly one requested execution provider.

    Graph optimizations are all on (``ORT_ENABLE_ALL``); ``threads`` sets
    ``intra_op_num_threads`` (None: onnxruntime's default, one per physical core).
    """

    #: The execution provider this backend asks for; it must be first in the session's.
    provider: ClassVar[str]
    #: The ``libonnxruntime_providers_<short>.so`` that holds the provider.
    provider_library: ClassVar[str | None] = None

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        self.session: Any = None
        self._names: list[str] = []

    @classmethod
    def probe(cls) -> str:
        return run_probe(cls, _ort(cls.name).__version__)

    def provider_list(self) -> list[Any]:
        """The ``providers`` argument of the session: the requested one, then fallbacks."""
        return [self.provider, "CPUExecutionProvider"]

    def load_impl(self) -> None:
        from nnkit.quiet import captured

        ort = _ort(self.name)
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"{self.name}: this onnxruntime build ({ort_distribution()} {ort.__version__}) "
                f"has no {self.provider}; install onnxruntime-gpu (and not onnxruntime beside it)"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = _SESSION_LOG_SEVERITY
        if self.threads:
            options.intra_op_num_threads = self.threads
        with captured() as log:
            session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=self.provider_list()
            )
        got = session.get_providers()
        if not got or got[0] != self.provider:
            raise BackendUnavailableError(self._fallback_reason(log.text, got))
        self.session = session
        self._names = [o.name for o in self.outputs]
        # Outputs numpy has no dtype for come back through OrtValues (session.run refuses).
        self._typed_outputs = any(is_low_precision(o.dtype) for o in self.outputs)
        self._timed_run = session.run

    def _fallback_reason(self, log: str, got: list[str]) -> str:
        """Why the requested provider did not load, from onnxruntime's captured log."""
        from nnkit.hardware import gpu_note

        reason = "onnxruntime gave no reason"
        for short, error in _LIB_FAILED.findall(log):
            if short == self.provider_library or reason == "onnxruntime gave no reason":
                missing = _MISSING_SO.search(error)
                reason = f"{missing.group(1)} not found" if missing else error.strip()
        requires = _REQUIRES.search(log)
        if requires:
            reason += f" (onnxruntime {_ort().__version__} requires {requires.group(1)})"
        fallback = ", ".join(p.removesuffix("ExecutionProvider") for p in got) or "nothing"
        return (
            f"{self.name}: {self.provider} did not load: {reason}; {gpu_note()} "
            f"(onnxruntime fell back to {fallback}; nnkit never does)"
        )

    def run_impl(self, feeds: Any) -> dict[str, Any]:
        """Run once, onnxruntime's log captured: a kernel that fails at run time prints
        an ANSI-coloured ``[E:onnxruntime:...]`` line, which goes into the one-line error."""
        from nnkit.quiet import captured

        error: Exception | None = None
        with captured() as log:
            try:
                run, prepared = self._session_feeds(feeds)
                outputs = self._outputs(run(self._names, prepared))
            except Exception as e:  # the runtime's own types; wrapped below
                error = e
        if error is not None:
            raise self.error(f"cannot run {self.path}", error, log.text) from error
        return outputs

    def error(self, what: str, cause: BaseException, log: str = "") -> BackendError:
        """The error in one line: for a kernel that failed, which node and onnxruntime's
        own words (its source location dropped), from the exception or, where the
        exception says less, from what onnxruntime logged."""
        from nnkit.errors import describe

        texts = [str(cause), *_ANSI.sub("", log).splitlines()]
        kernel = next((m for t in texts if (m := _KERNEL_FAILED.search(t))), None)
        if kernel is None:
            reason = describe(cause)
        else:
            op, node, message = kernel.groups()
            where = f"the {op} node {node!r}" if node else f"a {op} node"
            reason = f"{where} failed: {_WHERE_IN_SOURCE.sub('', message.strip())}"
        return BackendError(
            f"{self.name}: {what}: {reason}", backend=self.name, model_path=str(self.path)
        )

    def prepare_impl(self, feeds: dict[str, Any]) -> dict[str, Any]:
        self._timed_run, prepared = self._session_feeds(feeds)
        return prepared

    def _session_feeds(self, feeds: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The session call and the feeds as it takes them: an empty optional left out;
        tensors of the dtypes numpy lacks (and every feed beside them) as OrtValues, for
        ``run_with_ort_values``; else ``session.run`` on the arrays and lists."""
        feeds = {name: value for name, value in feeds.items() if value is not None}
        typed = self._typed_outputs or any(
            isinstance(v, np.ndarray) and is_low_precision(v.dtype) for v in feeds.values()
        )
        if not typed:
            return self.session.run, feeds
        values = {name: self._ortvalue(name, value) for name, value in feeds.items()}
        return self.session.run_with_ort_values, values

    def _ortvalue(self, name: str, value: Any, device: str = "cpu", device_id: int = 0) -> Any:
        """A feed as an OrtValue on ``device``; the dtypes numpy lacks by their bits."""
        ort = _ort()
        if not isinstance(value, np.ndarray):
            raise BackendError(
                f"{self.name}: input {name!r} is a sequence, which onnxruntime's Python API "
                "cannot take beside tensors of a dtype numpy lacks (bfloat16, float8, int4 ...)",
                backend=self.name,
                model_path=str(self.path),
            )
        if not is_low_precision(value.dtype):
            return ort.OrtValue.ortvalue_from_numpy(contiguous(value), device, device_id)
        elem_type = onnx_elem_type(str(value.dtype))
        host = ort.OrtValue.ortvalue_from_shape_and_type(list(value.shape), elem_type, "cpu", 0)
        bits = pack_bits(value) if LOW_PRECISION[str(value.dtype)] < 8 else contiguous(value)
        ctypes.memmove(
            host.data_ptr(), bits.ctypes.data, min(bits.nbytes, host.tensor_size_in_bytes())
        )
        if device == "cpu":
            return host
        on_device = ort.OrtValue.ortvalue_from_shape_and_type(
            list(value.shape), elem_type, device, device_id
        )
        on_device.update_inplace(host)
        return on_device

    def run_prepared(self, prepared: Any) -> Any:
        # The call the harness times: nothing between its clock and session.run
        # (a dict of the outputs alone costs 0.4 us, 8 % of the smallest model's run).
        return self._timed_run(self._names, prepared)

    def fetch(self, result: Any) -> dict[str, Any]:
        if isinstance(result, dict):  # cuda: OrtValues on the device
            return {name: _host_value(value) for name, value in result.items()}
        return self._outputs(result)

    def _outputs(self, result: list[Any]) -> dict[str, Any]:
        """``session.run``'s (or ``run_with_ort_values``') outputs, by name, as values."""
        return {
            name: _host_value(value) if _is_ortvalue(value) else fetched(value)
            for name, value in zip(self._names, result, strict=True)
        }

    def close_impl(self) -> None:
        self.session = None


class CPUBackend(OnnxRuntimeBackend):
    """onnxruntime on the CPU (``CPUExecutionProvider``)."""

    name: ClassVar[str] = "cpu"
    requirement: ClassVar[str] = REQUIREMENTS["cpu"]
    provider: ClassVar[str] = "CPUExecutionProvider"

    def provider_list(self) -> list[Any]:
        return [self.provider]


class _Bound:
    """Feeds already on the device, bound with the outputs to one IOBinding."""

    def __init__(self, binding: Any, values: list[Any]) -> None:
        self.binding = binding
        self.values = values  # keep the device buffers alive as long as the binding


class CUDABackend(OnnxRuntimeBackend):
    """onnxruntime on an NVIDIA GPU (``CUDAExecutionProvider``, device 0).

    :meth:`run` takes and returns numpy arrays. For timing, :meth:`prepare` copies the
    feeds to the device once and binds them and the outputs (on the device) with an
    IOBinding; :meth:`run_prepared` then runs with no host copies, waits for the device
    and returns the outputs as device-resident ``OrtValue`` objects.
    """

    name: ClassVar[str] = "cuda"
    requirement: ClassVar[str] = REQUIREMENTS["cuda"]
    provider: ClassVar[str] = "CUDAExecutionProvider"
    provider_library: ClassVar[str | None] = "cuda"
    #: The device the inputs and outputs live on.
    device_id: ClassVar[int] = 0

    def provider_list(self) -> list[Any]:
        # CUDABackend.provider, not self.provider: TensorRT lists CUDA as its next choice.
        cuda = (CUDABackend.provider, {"device_id": self.device_id})
        return [cuda, "CPUExecutionProvider"]

    def prepare_impl(self, feeds: dict[str, Any]) -> _Bound:
        binding = self.session.io_binding()
        values = []
        for name, arr in feeds.items():
            if arr is None:  # an empty optional: not bound
                continue
            value = self._ortvalue(name, arr, "cuda", self.device_id)
            binding.bind_ortvalue_input(name, value)
            values.append(value)
        for out in self.outputs:
            binding.bind_output(out.name, "cuda", self.device_id)
        binding.synchronize_inputs()
        return _Bound(binding, values)

    def run_prepared(self, prepared: Any) -> Any:
        return self.run_impl(prepared)

    def run_impl(self, feeds: Any) -> Any:
        if not isinstance(feeds, _Bound):
            return super().run_impl(feeds)
        self.session.run_with_iobinding(feeds.binding)
        feeds.binding.synchronize_outputs()  # the harness's clock must wait for the device
        return dict(zip([o.name for o in self.outputs], feeds.binding.get_outputs(), strict=True))


def default_trt_cache() -> Path:
    """Where TensorRT engines are cached by default: ``$XDG_CACHE_HOME/nnkit/trt``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnkit" / "trt"


class TensorRTBackend(CUDABackend):
    """onnxruntime with ``TensorrtExecutionProvider`` (CUDA, then CPU, for what TensorRT cannot take).

    Built engines are cached on disk (``cache_dir``, default :func:`default_trt_cache`):
    the first :meth:`load` of a model builds its engine, later loads read it. Timing
    that build is the harness's business: time :meth:`load`. FP32 only (no fp16/int8):
    parity is judged against PyTorch in fp32.
    """

    name: ClassVar[str] = "tensorrt"
    requirement: ClassVar[str] = REQUIREMENTS["tensorrt"]
    provider: ClassVar[str] = "TensorrtExecutionProvider"
    provider_library: ClassVar[str | None] = "tensorrt"

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(path, threads=threads)
        self.cache_dir = Path(cache_dir) if cache_dir else default_trt_cache()

    def provider_list(self) -> list[Any]:
        cache = str(self.cache_dir)
        options = {
            "device_id": self.device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
        }
        return [(self.provider, options), *super().provider_list()]

    def load_impl(self) -> None:
        created = not self.cache_dir.exists()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            super().load_impl()
        except BaseException:
            if created:  # leave no empty cache folder behind where TensorRT cannot run
                with contextlib.suppress(OSError):
                    self.cache_dir.rmdir()
            raise
