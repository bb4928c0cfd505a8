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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from nnkit.backends import REQUIREMENTS
from nnkit.backends._probe import import_runtime, run_probe
from nnkit.backends.base import Backend, contiguous, fetched
from nnkit.errors import BackendError, BackendUnavailableError, NnkitError
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
    from nnkit.onnxfile import onnx_dtype_name

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


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SessionRun:
    """A session call with its arguments bound: what :meth:`~OnnxRuntimeBackend.run_prepared`
    calls, and nothing more (the harness times it)."""

    call: Callable[..., Any]
    args: tuple[Any, ...]
    #: Device buffers bound to the call, kept alive as long as it is.
    keep: tuple[Any, ...] = ()


def fallback_reason(
    log: str, got: Sequence[str], *, backend: str, provider: str, library: str | None
) -> str:
    """Why ``provider`` did not load, read from onnxruntime's captured session log.

    Args:
        log: what onnxruntime printed while the session was created.
        got: the providers the session got instead.
        backend: the backend's name, which opens the message.
        provider: the execution provider asked for.
        library: the short name of the ``libonnxruntime_providers_<short>.so`` holding it.
    """
    from nnkit.machine import gpu_note

    reason = "onnxruntime gave no reason"
    for short, error in _LIB_FAILED.findall(log):
        if short == library or reason == "onnxruntime gave no reason":
            missing = _MISSING_SO.search(error)
            reason = f"{missing.group(1)} not found" if missing else error.strip()
    requires = _REQUIRES.search(log)
    if requires:
        reason += f" (onnxruntime {_ort().__version__} requires {requires.group(1)})"
    fallback = ", ".join(p.removesuffix("ExecutionProvider") for p in got) or "nothing"
    return (
        f"{backend}: {provider} did not load: {reason}; {gpu_note()} "
        f"(onnxruntime fell back to {fallback}; nnkit never does)"
    )


class OnnxRuntimeBackend(Backend[SessionRun, Any]):
    """An onnxruntime session with exactly one requested execution provider.

    Graph optimizations are all on (``ORT_ENABLE_ALL``); ``threads`` sets
    ``intra_op_num_threads`` (None: onnxruntime's default, one per physical core).
    """

    #: The execution provider this backend asks for; it must be first in the session's.
    provider: ClassVar[str]
    #: The ``libonnxruntime_providers_<short>.so`` that holds the provider.
    provider_library: ClassVar[str | None] = None

    #: The session, while loaded.
    session: Any = None
    #: The names of the outputs asked of the session, in order (set by ``load``).
    _names: list[str]
    #: Some output has a dtype numpy lacks: runs go through OrtValues.
    _typed_outputs: bool = False

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
                str(self.runtime_path), sess_options=options, providers=self.provider_list()
            )
        got = session.get_providers()
        if not got or got[0] != self.provider:
            raise BackendUnavailableError(
                fallback_reason(
                    log.text,
                    got,
                    backend=self.name,
                    provider=self.provider,
                    library=self.provider_library,
                )
            )
        self.session = session
        self._names = [o.name for o in self.outputs]
        # Outputs numpy has no dtype for come back through OrtValues (session.run refuses).
        self._typed_outputs = any(is_low_precision(o.dtype) for o in self.outputs)

    def guarded(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` with onnxruntime's log captured: a kernel that fails at run time
        prints an ANSI-coloured ``[E:onnxruntime:...]`` line, which goes into the
        one-line error."""
        from nnkit.quiet import captured

        with captured() as log:
            try:
                return call()
            except NnkitError:
                raise
            except Exception as e:  # the runtime's own types; wrapped below
                error = e
        raise self.error(what, error, log.text) from error

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

    def prepare_impl(self, feeds: dict[str, Any]) -> SessionRun:
        """The session call and the feeds as it takes them: an empty optional left out;
        tensors of the dtypes numpy lacks (and every feed beside them) as OrtValues, for
        ``run_with_ort_values``; else ``session.run`` on the arrays and lists."""
        feeds = {name: value for name, value in feeds.items() if value is not None}
        typed = self._typed_outputs or any(
            isinstance(v, np.ndarray) and is_low_precision(v.dtype) for v in feeds.values()
        )
        if not typed:
            return SessionRun(self.session.run, (self._names, feeds))
        values = {name: self._ortvalue(name, value) for name, value in feeds.items()}
        return SessionRun(self.session.run_with_ort_values, (self._names, values))

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

    def run_prepared(self, prepared: SessionRun) -> Any:
        # The call the harness times: nothing between its clock and session.run
        # (a dict of the outputs alone costs 0.4 us, 8 % of the smallest model's run).
        return prepared.call(*prepared.args)

    def fetch(self, result: Any) -> dict[str, Any]:
        """``session.run``'s (or ``run_with_ort_values``') outputs, by name, as values;
        for an IOBinding run (``cuda``), output name -> OrtValue on the device."""
        if isinstance(result, dict):  # cuda: OrtValues on the device
            return {name: _host_value(value) for name, value in result.items()}
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


class CUDABackend(OnnxRuntimeBackend):
    """onnxruntime on an NVIDIA GPU (``CUDAExecutionProvider``, device 0).

    :meth:`prepare` copies the feeds to the device once and binds them and the outputs
    (on the device) with an IOBinding; :meth:`run_prepared` then runs with no host
    copies, waits for the device and returns the outputs as device-resident
    ``OrtValue`` objects, which :meth:`fetch` copies back. :meth:`run` takes that same
    path. A model whose values cannot live on the device (strings, sequences,
    optionals) runs through ``session.run`` on host values instead, timed runs too.
    """

    name: ClassVar[str] = "cuda"
    requirement: ClassVar[str] = REQUIREMENTS["cuda"]
    provider: ClassVar[str] = "CUDAExecutionProvider"
    provider_library: ClassVar[str | None] = "cuda"
    #: The GPU the inputs and outputs live on.
    device_id: ClassVar[int] = 0

    @property
    def device(self) -> str:
        return f"cuda:{self.device_id}"

    def provider_list(self) -> list[Any]:
        # CUDABackend.provider, not self.provider: TensorRT lists CUDA as its next choice.
        cuda = (CUDABackend.provider, {"device_id": self.device_id})
        return [cuda, "CPUExecutionProvider"]

    def prepare_impl(self, feeds: dict[str, Any]) -> SessionRun:
        if not self._bindable(feeds):
            return super().prepare_impl(feeds)
        binding = self.session.io_binding()
        values = []
        for name, arr in feeds.items():
            if arr is None:  # an empty optional: not bound
                continue
            value = self._ortvalue(name, arr, "cuda", self.device_id)
            binding.bind_ortvalue_input(name, value)
            values.append(value)
        for out in self._names:
            binding.bind_output(out, "cuda", self.device_id)
        binding.synchronize_inputs()
        return SessionRun(self._run_bound, (binding,), keep=tuple(values))

    def _bindable(self, feeds: dict[str, Any]) -> bool:
        """Every value can live on the device: numeric tensors in, tensors out."""
        inputs = {i.name for i in self.inputs}
        return all(
            v is None or (isinstance(v, np.ndarray) and v.dtype.kind not in "OUSV")
            for v in feeds.values()
        ) and all(
            o.kind == "tensor" and o.dtype != "string" and o.name not in inputs
            for o in self.outputs
        )

    def _run_bound(self, binding: Any) -> dict[str, Any]:
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # the harness's clock must wait for the device
        return dict(zip(self._names, binding.get_outputs(), strict=True))


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
        outputs: Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(path, threads=threads, outputs=outputs)
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
