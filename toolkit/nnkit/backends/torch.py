"""PyTorch eager: the ``torch`` backend, the reference every runtime is judged against.

It runs the PyTorch module itself, not an ONNX file, so it is built from the module and
the names of its inputs and outputs (:meth:`TorchBackend.from_module`). It keeps the
base contract: :meth:`~nnkit.backends.base.Backend.run` checks the feeds against the
declared inputs, then :meth:`TorchBackend.run_impl` runs the module under
``torch.inference_mode()`` and returns every output as a numpy array, a tuple or list
of outputs flattened, in order, onto the output names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from nnkit.backends import REQUIREMENTS
from nnkit.backends.base import Backend, TensorInfo
from nnkit.errors import BackendError, BackendUnavailableError, InputError, NnkitError


class TorchBackend(Backend):
    """A ``torch.nn.Module`` in eval mode, on the CPU.

    ``threads`` sets ``torch.set_num_threads`` while loaded (restored on close): torch's
    thread count is per process.
    """

    name: ClassVar[str] = "torch"
    requirement: ClassVar[str] = REQUIREMENTS["torch"]

    def __init__(
        self,
        module: torch.nn.Module,
        inputs: Sequence[TensorInfo],
        output_names: Sequence[str],
        *,
        threads: int | None = None,
    ) -> None:
        super().__init__(f"<torch {type(module).__name__}>", threads=threads)
        self.module = module
        self._declared_inputs = tuple(inputs)
        # Shapes are known only once it runs; dtype is what a float model gives.
        self._declared_outputs = tuple(TensorInfo(n, (), "float32") for n in output_names)
        self._saved_threads: int | None = None

    @classmethod
    def from_module(
        cls,
        module: torch.nn.Module,
        inputs: Sequence[TensorInfo],
        output_names: Sequence[str],
        *,
        threads: int | None = None,
    ) -> TorchBackend:
        """The backend for ``module``, fed ``inputs`` (by name) and giving ``output_names``."""
        return cls(module, inputs, output_names, threads=threads)

    @classmethod
    def probe(cls) -> str:
        try:
            y = torch.nn.ReLU()(torch.tensor([-1.0, 2.0]))
        except Exception as e:
            raise BackendUnavailableError(f"torch: cannot run nn.ReLU: {e}") from e
        if y.tolist() != [0.0, 2.0]:
            raise BackendUnavailableError("torch: nn.ReLU gave a wrong answer")
        return str(torch.__version__)

    def load(self) -> None:
        """Declare the inputs and outputs given at construction; put the module in eval mode."""
        self.inputs, self.outputs = self._declared_inputs, self._declared_outputs
        try:
            self.load_impl()
        except NnkitError:
            raise
        except Exception as e:
            raise self.error("cannot load", e) from e
        self._loaded = True

    def load_impl(self) -> None:
        self.module.eval()
        if self.threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {name: _tensor(a) for name, a in feeds.items()}

    def run_impl(self, feeds: Any) -> dict[str, np.ndarray]:
        args = [_tensor(feeds[i.name]) for i in self.inputs]
        with torch.inference_mode():
            result = self.module(*args)
        values = _flatten(result)
        if len(values) != len(self.outputs):
            raise BackendError(
                f"torch: {type(self.module).__name__} gives {len(values)} outputs, "
                f"{len(self.outputs)} are named ({', '.join(o.name for o in self.outputs)})",
                backend=self.name,
            )
        return {o.name: to_numpy(v) for o, v in zip(self.outputs, values, strict=True)}

    def close_impl(self) -> None:
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None


#: ml_dtypes names torch has a dtype for; their bits cross as a same-width integer.
_TORCH_LOW_PRECISION = (
    "bfloat16",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
)


def to_torch(value: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory (copied only when not contiguous or read-only).

    bfloat16 and the float8 types (``ml_dtypes`` arrays, which ``torch.from_numpy``
    refuses) cross as their bits, then take torch's dtype of the same name.

    Raises:
        InputError: a dtype torch has none for (int4, float4, strings ...).
    """
    name = str(value.dtype)
    if name in _TORCH_LOW_PRECISION and hasattr(torch, name):
        bits = np.int16 if value.dtype.itemsize == 2 else np.int8
        raw = np.require(value, requirements=["C", "W"]).view(bits)
        return torch.from_numpy(raw).view(getattr(torch, name))
    if value.dtype.kind in "OUSV":
        from nnkit.values import dtype_name

        raise InputError(f"PyTorch has no tensors of {dtype_name(value)}")
    return torch.from_numpy(np.require(value, requirements=["C", "W"]))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array; bfloat16 and float8 as the ``ml_dtypes`` array of their bits."""
    import ml_dtypes

    tensor = tensor.detach().cpu()
    name = str(tensor.dtype).removeprefix("torch.")
    if name in _TORCH_LOW_PRECISION:
        bits = torch.int16 if tensor.element_size() == 2 else torch.int8
        return tensor.contiguous().view(bits).numpy().view(getattr(ml_dtypes, name))
    return tensor.numpy()


def _tensor(value: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor sharing the array's memory (copied only when not contiguous or read-only)."""
    if isinstance(value, torch.Tensor):
        return value
    return to_torch(value)


def _flatten(result: Any) -> list[torch.Tensor]:
    """A module's result as a flat list of tensors: tuples, lists and dicts (by order) opened."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (tuple, list)):
        return [t for item in result for t in _flatten(item)]
    raise BackendError(
        f"torch: the model returned a {type(result).__name__}, not tensors", backend="torch"
    )
