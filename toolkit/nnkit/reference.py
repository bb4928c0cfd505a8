"""The PyTorch side: a module run on named numpy inputs, the reference of every verdict.

:class:`Reference` runs a ``torch.nn.Module`` in eval mode, under
``torch.inference_mode()``, on named numpy inputs bound to ``forward`` in order, and
gives named numpy outputs: a tuple, list or dict of results flattened, in order, onto
the output names. It can also capture what submodules return, through forward hooks
(``capture=``), for finding where an export first departs from the model.

It is no backend (it runs no ONNX file) but keeps the timing protocol's two calls,
:meth:`Reference.prepare` and :meth:`Reference.run_prepared`, so bench times PyTorch
eager exactly as it times each runtime. Importing this module imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch

from nnkit.errors import BackendError, BackendUnavailableError, InputError, NnkitError, describe

if TYPE_CHECKING:
    from nnkit.backends.base import TensorInfo
    from nnkit.resolve import ResolvedModel

#: What ``capture=`` takes: module names (as ``named_modules()`` gives them), every leaf
#: module (one without children), or every module but the root.
Capture = Sequence[str] | Literal["leaves", "all"]


class Reference:
    """A ``torch.nn.Module`` in eval mode, on the CPU, run on named numpy inputs.

    ``threads`` sets ``torch.set_num_threads`` while loaded (restored on close): torch's
    thread count is per process. Use as a context manager, or call :meth:`load` and
    :meth:`close`.

    Args:
        module: the model.
        inputs: its inputs, in ``forward``'s order (feeds are checked against them).
        outputs: names for what ``forward`` returns, flattened.
        threads: torch's thread count while loaded (None: leave it).
        capture: submodules whose outputs each run keeps in :attr:`captured`; None for
            none.
        capture_inputs: keep the tensors each captured submodule is called with too.
    """

    #: The name bench gives the reference's column.
    name: ClassVar[str] = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        inputs: Sequence[TensorInfo],
        outputs: Sequence[str],
        *,
        threads: int | None = None,
        capture: Capture | None = None,
        capture_inputs: bool = False,
    ) -> None:
        self.module = module
        self.inputs: tuple[TensorInfo, ...] = tuple(inputs)
        self.outputs: tuple[str, ...] = tuple(outputs)
        self.threads = threads
        self.capture = capture
        #: The captured submodules' outputs of the last run, in the order the modules
        #: returned: ``name`` for a module that returned one tensor, ``name[i]`` for the
        #: i-th tensor of what it returned (tuples, lists and dicts flattened), and
        #: ``name#n`` (``name#n[i]``) for its n-th call in the run (n from 2). With
        #: ``capture_inputs``, also ``name(in)[i]`` (``name#n(in)[i]``): the i-th tensor
        #: it was called with, kept when it is called, so the keys follow execution order.
        self.captured: dict[str, np.ndarray] = {}
        self.capture_inputs = capture_inputs
        self._calls: dict[str, int] = {}
        self._hooks: list[Any] = []
        self._saved_threads: int | None = None
        self._loaded = False

    @classmethod
    def from_model(
        cls,
        model: ResolvedModel,
        *,
        threads: int | None = None,
        capture: Capture | None = None,
        capture_inputs: bool = False,
    ) -> Reference:
        """The reference for a resolved model: its module, input specs and output names."""
        from nnkit.spec import tensor_infos

        return cls(
            model.module,
            tensor_infos(model.inputs),
            model.outputs,
            threads=threads,
            capture=capture,
            capture_inputs=capture_inputs,
        )

    @classmethod
    def probe(cls) -> str:
        """Run an ``nn.ReLU``; return torch's version.

        Raises:
            BackendUnavailableError: torch cannot run it, or answers wrong.
        """
        try:
            y = torch.nn.ReLU()(torch.tensor([-1.0, 2.0]))
        except Exception as e:
            raise BackendUnavailableError(f"torch: cannot run nn.ReLU: {e}") from e
        if y.tolist() != [0.0, 2.0]:
            raise BackendUnavailableError("torch: nn.ReLU gave a wrong answer")
        return str(torch.__version__)

    @property
    def label(self) -> str:
        """How errors name the model: ``<torch ClassName>``."""
        return f"<torch {type(self.module).__name__}>"

    # -- the contract -----------------------------------------------------------------
    def load(self) -> None:
        """Put the module in eval mode, set the threads and hook the captured modules.

        Raises:
            NnkitError: ``capture=`` names a module the model does not have.
        """
        if self._loaded:
            self.close()
        targets = capture_targets(self.module, self.capture) if self.capture is not None else []
        try:
            self.module.eval()
        except Exception as e:
            raise BackendError(f"torch: cannot load: {describe(e)}", backend=self.name) from e
        if self.threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        self._hooks = [m.register_forward_hook(self._hook(n)) for n, m in targets]
        if self.capture_inputs:
            self._hooks += [m.register_forward_pre_hook(self._pre_hook(n)) for n, m in targets]
        self._loaded = True

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once on ``feeds`` (input name -> array); return output name -> array.

        The captured submodules' outputs of this run are in :attr:`captured`.

        Raises:
            InputError: feeds that do not fit the declared inputs.
            BackendError: the module failed, or returned a number of tensors other than
                the number of output names.
        """
        prepared = self.prepare(feeds)
        try:
            return self.fetch(self.run_prepared(prepared))
        except NnkitError:
            raise
        except Exception as e:
            raise BackendError(
                f"torch: cannot run {self.label}: {describe(e)}", backend=self.name
            ) from e

    def prepare(self, feeds: Mapping[str, Any]) -> list[torch.Tensor]:
        """Check ``feeds``; the arguments of ``forward``, as tensors sharing their memory."""
        from nnkit.backends.base import check_feeds

        if not self._loaded:
            raise RuntimeError("the PyTorch reference is not loaded: call load() first")
        check_feeds(self.inputs, feeds)
        return [_tensor(feeds[i.name]) for i in self.inputs]

    def run_prepared(self, prepared: list[torch.Tensor]) -> Any:
        """Call the module on :meth:`prepare`'s arguments; what ``forward`` returned."""
        self.captured, self._calls = {}, {}
        with torch.inference_mode():
            return self.module(*prepared)

    def fetch(self, result: Any) -> dict[str, np.ndarray]:
        """What ``forward`` returned, flattened onto the output names, as arrays."""
        values = _flatten(result)
        if len(values) != len(self.outputs):
            raise BackendError(
                f"torch: {type(self.module).__name__} gives {len(values)} outputs, "
                f"{len(self.outputs)} are named ({', '.join(self.outputs)})",
                backend=self.name,
            )
        return {name: to_numpy(v) for name, v in zip(self.outputs, values, strict=True)}

    def close(self) -> None:
        """Remove the hooks and restore torch's thread count; it can be loaded again."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        self._loaded = False

    def __enter__(self) -> Reference:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- capture ----------------------------------------------------------------------
    def _pre_hook(self, name: str) -> Any:
        def keep(module: torch.nn.Module, args: Any) -> None:
            calls = self._calls.get(name, 0) + 1
            key = name if calls == 1 else f"{name}#{calls}"
            for index, tensor in enumerate(_flatten(args, strict=False)):
                self.captured[f"{key}(in)[{index}]"] = to_numpy(tensor.detach().clone())

        return keep

    def _hook(self, name: str) -> Any:
        def keep(module: torch.nn.Module, args: Any, output: Any) -> None:
            calls = self._calls[name] = self._calls.get(name, 0) + 1
            key = name if calls == 1 else f"{name}#{calls}"
            tensors = _flatten(output, strict=False)
            single = isinstance(output, torch.Tensor)
            for index, tensor in enumerate(tensors):
                # a copy: a later in-place op (ReLU(inplace=True)) must not change it
                value = to_numpy(tensor.detach().clone())
                self.captured[key if single else f"{key}[{index}]"] = value

        return keep


def capture_targets(module: torch.nn.Module, capture: Capture) -> list[tuple[str, torch.nn.Module]]:
    """The (qualified name, submodule) pairs ``capture`` names, in ``named_modules()`` order.

    Raises:
        NnkitError: a name no submodule has (the message lists those there are), or a
            ``capture`` that is none of the forms :data:`Capture` allows.
    """
    named = [(n, m) for n, m in module.named_modules() if n]  # the root's are the outputs
    if capture == "all":
        return named
    if capture == "leaves":
        return [(n, m) for n, m in named if next(m.children(), None) is None]
    if isinstance(capture, str):
        raise NnkitError(
            f"capture={capture!r}: give 'leaves', 'all' or a list of module names "
            f"(such as {[n for n, _ in named[:3]]!r})"
        )
    by_name = dict(named)
    wanted = list(dict.fromkeys(capture))
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        names = ", ".join(map(repr, by_name)) or "none"
        raise NnkitError(
            f"capture: {type(module).__name__} has no submodule {unknown[0]!r}; its "
            f"submodules are {names}"
        )
    return [(n, by_name[n]) for n in wanted]


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


def _flatten(result: Any, *, strict: bool = True) -> list[torch.Tensor]:
    """A module's result as a flat list of tensors: tuples, lists and dicts (by order)
    opened. Anything else is an error, or with ``strict`` off, skipped."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (tuple, list)):
        return [t for item in result for t in _flatten(item, strict=strict)]
    if not strict:
        return []
    raise BackendError(
        f"torch: the model returned a {type(result).__name__}, not tensors", backend="torch"
    )
