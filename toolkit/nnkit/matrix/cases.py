"""The cases of a model: the input shapes and values each backend runs and PyTorch judges.

Generated cases change every dynamic dim (the example size, 1, and an odd larger size)
and draw their inputs from seeds of their own, never the export's, so an exporter that
froze a dim or baked an input-dependent value into a constant shows up as a mismatch.
Cases can be given too, beside the generated ones (or instead, with
``generated=False``): chosen sizes of the dynamic dims (``--case batch=1,seq=1``,
generated inputs at those sizes), real inputs (``--data``: one ``.npz`` file per case,
arrays keyed by input name), and a module object's example inputs (case ``example``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nnkit.errors import InputError, NnkitError
from nnkit.spec import Dim, TensorSpec, example_sizes, tensor_infos

#: Seeds of the shape cases' inputs; the export traces with seed 0 (``example_args``).
CASE_SEEDS = (1, 2, 3)


class ParityRequestError(NnkitError):
    """A parity request that cannot be carried out (exit status 2)."""


class HasInputs(Protocol):
    """What cases are made from: a model's name, input specs and example inputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    examples: dict[str, Any] | None


@dataclass(frozen=True)
class ShapeCase:
    """One case to run: dynamic dim label -> size, and the inputs' seed.

    A case with ``feeds`` runs those arrays (real inputs, example inputs) instead of
    generating them; its ``seed`` is None. ``source`` says where the case came from:
    ``generated``, ``chosen`` (``--case``), ``data`` (a file) or ``example``.
    """

    name: str
    sizes: Mapping[str, int]
    seed: int | None
    feeds: Mapping[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    source: str = "generated"

    def shapes(self, specs: Sequence[TensorSpec]) -> dict[str, tuple[int, ...]]:
        if self.feeds is not None:
            return {k: tuple(v.shape) for k, v in self.feeds.items()}
        return {s.name: s.shape_with(dict(self.sizes)) for s in specs}

    def inputs(self, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
        """The case's input arrays: its own, or generated from ``specs`` at its sizes."""
        from nnkit.inputs import generate

        if self.feeds is not None:
            return {k: np.array(v, copy=True) for k, v in self.feeds.items()}
        return generate(specs, sizes=self.sizes, seed=self.seed or 0)


def larger_size(example: int) -> int:
    """An odd size above the example for a dynamic dim: batch 2 -> 5, seq 7 -> 13."""
    return max(5, 2 * example - 1)


def shape_cases(specs: Sequence[TensorSpec]) -> tuple[ShapeCase, ...]:
    """The shape cases of a model: the example sizes, every dynamic dim 1, every one larger.

    Each case has its own seed. A model without dynamic dims gets its one shape twice,
    with two seeds.
    """
    labels = example_sizes(specs)
    if not labels:
        return (ShapeCase("static", {}, CASE_SEEDS[0]), ShapeCase("static#2", {}, CASE_SEEDS[1]))
    sizes = (
        dict(labels),
        dict.fromkeys(labels, 1),
        {label: larger_size(ex) for label, ex in labels.items()},
    )
    return tuple(
        ShapeCase(_sizes_name(s), s, seed) for s, seed in zip(sizes, CASE_SEEDS, strict=True)
    )


def _sizes_name(sizes: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items())


def chosen_cases(
    specs: Sequence[TensorSpec], chosen: Sequence[Mapping[str, int]], *, model: str
) -> list[ShapeCase]:
    """Cases at chosen sizes of the dynamic dims (``--case``); a label not given takes
    its example size. Each has a seed of its own, after the generated cases' seeds.

    Raises:
        ParityRequestError: a label the model's specs do not have.
    """
    labels = example_sizes(specs)
    cases = []
    for i, sizes in enumerate(chosen):
        unknown = [k for k in sizes if k not in labels]
        if unknown:
            have = ", ".join(map(repr, labels)) or "none (every dim is fixed)"
            raise ParityRequestError(
                f"--case {_sizes_name(sizes)}: model {model!r} has no dynamic dim "
                f"{', '.join(map(repr, unknown))}; its dynamic dims are {have}"
            )
        full = {k: sizes.get(k, v) for k, v in labels.items()}
        cases.append(ShapeCase(_sizes_name(full), full, len(CASE_SEEDS) + 1 + i, source="chosen"))
    return cases


def load_data(data: str | Path | Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict]:
    """Real inputs: case name -> input name -> array.

    ``data`` is one ``.npz`` file (one case, named after the file), a folder of them
    (every ``*.npz`` in it, one case each, in name order), or, from Python, a mapping
    case name -> arrays.

    Raises:
        InputError: a missing path, a folder without ``.npz`` files, an unreadable file.
    """
    from nnkit.inputs import load_feeds

    if isinstance(data, Mapping):
        return {str(name): dict(feeds) for name, feeds in data.items()}
    path = Path(data)
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise InputError(f"--data folder {str(path)!r} holds no .npz file (one per case)")
    elif path.is_file() and path.suffix == ".npz":
        files = [path]
    elif path.exists():
        raise InputError(
            f"--data {str(path)!r} is not a .npz file or a folder of them "
            "(one .npz per case, arrays keyed by input name)"
        )
    else:
        raise InputError(f"--data {str(path)!r} does not exist")
    return {f.name: load_feeds([(None, f)]) for f in files}


def data_cases(
    specs: Sequence[TensorSpec], data: Mapping[str, Mapping[str, np.ndarray]], *, model: str
) -> list[ShapeCase]:
    """Cases of real inputs, checked against the model's specs: names, ranks, fixed
    dims, dtypes, one size per dynamic dim label.

    Raises:
        InputError: a case whose arrays do not fit the specs, naming the case.
    """
    from nnkit.backends.base import check_feeds

    infos = tensor_infos(specs)
    cases = []
    for name, feeds in data.items():
        try:
            check_feeds(infos, feeds)
        except InputError as e:
            raise InputError(f"case {name!r} for model {model!r}: {e.format_message()}") from None
        sizes = {
            d.label: int(feeds[s.name].shape[axis])
            for s in specs
            for axis, d in enumerate(s.dims)
            if isinstance(d, Dim)
        }
        cases.append(ShapeCase(name, sizes, None, feeds=feeds, source="data"))
    return cases


def model_cases(
    model: HasInputs,
    *,
    chosen: Sequence[Mapping[str, int]] = (),
    data: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    generated: bool = True,
) -> list[ShapeCase]:
    """Every case of ``model``: generated (unless ``generated`` is False), its example
    inputs, chosen sizes, real inputs; a case whose name is taken already is dropped.

    Raises:
        ParityRequestError: no case at all, or a chosen size the model does not have.
        InputError: real inputs that do not fit the model.
    """
    cases = list(shape_cases(model.inputs)) if generated else []
    if model.examples is not None:
        examples = data_cases(model.inputs, {"example": model.examples}, model=model.name)
        cases += [replace(c, source="example") for c in examples]
    cases += chosen_cases(model.inputs, chosen, model=model.name)
    cases += data_cases(model.inputs, data or {}, model=model.name)
    if not cases:
        raise ParityRequestError(
            f"no cases to run for model {model.name!r}: give --case or --data, or let nnkit "
            "generate cases"
        )
    unique: dict[str, ShapeCase] = {}
    for case in cases:
        if case.name in unique:
            if case.source == "chosen":  # those sizes run already
                continue
            raise ParityRequestError(f"model {model.name!r} has two cases named {case.name!r}")
        unique[case.name] = case
    return list(unique.values())


def case_to_dict(case: ShapeCase) -> dict[str, Any]:
    """A case as the JSON report and the plan write it (its arrays are not written)."""
    return {"name": case.name, "sizes": dict(case.sizes), "seed": case.seed, "source": case.source}


def case_from_dict(data: Mapping[str, Any]) -> ShapeCase:
    """A case read back from :func:`case_to_dict` (without arrays)."""
    return ShapeCase(data["name"], dict(data["sizes"]), data["seed"], source=data["source"])
