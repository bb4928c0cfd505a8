"""Blame and a minimal repro: the divergent nodes alone, on every CPU runtime.

The cut (:class:`~nnkit.localize.divergence.Divergence`) is extracted as a standalone
file (:func:`nnkit.onnxfile.edits.extract_subgraph`, checker-valid) whose inputs are the
values PyTorch computed at that point, and run on every CPU backend that runs here, in
the runtimes' worker. Each runtime's answer is judged against PyTorch's with the cell's
tolerance, and against the answer of the backend under test:

- the backend under test differs from PyTorch, another computes the nodes as PyTorch
  does: ``runtime`` (the agreeing backends are those);
- every runtime (two or more) gives the same answer, none PyTorch's: the file says
  something else than the model: ``export`` (the agreeing backends are all of them);
- anything else: ``unknown``.

A repro is written only where the nodes alone still differ on the backend under test:
the file, its inputs and PyTorch's outputs (``.npz`` in nnkit's layout, which
``nnkit infer --input`` reads), each written atomically.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnkit.compare import Tolerance
from nnkit.compare.metrics import compare_with
from nnkit.errors import NnkitError
from nnkit.fsutil import atomic_output, make_folder, temporary_folder
from nnkit.localize.result import Repro

if TYPE_CHECKING:
    import onnx

    from nnkit.matrix.cell import Executor

#: The backends the nodes are run on to decide whom to blame (where they run here).
BLAME_BACKENDS = ("cpu", "openvino", "tract", "reference")


@dataclass
class Blame:
    """Whom the nodes alone blame, who agreed, and the repro where it reproduces."""

    blame: str
    agreeing: list[str]
    reproduces: bool
    repro: Repro | None = None
    notes: list[str] = field(default_factory=list)


def cut_model(
    model: onnx.ModelProto, inputs: Sequence[str], output: str
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The nodes from ``inputs`` to ``output`` as a standalone model, with file-safe
    value names at its boundary; the renaming (ONNX name -> the repro's name)."""
    from nnkit.onnxfile.edits import extract_subgraph

    sub = extract_subgraph(model, list(inputs), [output])
    names: dict[str, str] = {}
    for name in [*inputs, output]:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "value"
        while safe in names.values():
            safe += "_"
        names[name] = safe
    for value in (*sub.graph.input, *sub.graph.output):
        value.name = names[value.name]
    for node in sub.graph.node:
        node.input[:] = [names.get(n, n) if n in inputs else n for n in node.input]
        node.output[:] = [names[n] if n == output else n for n in node.output]
    return sub, names


def blame_cut(
    runtimes: Executor,
    sub: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    *,
    backend: str,
    tolerance: Tolerance,
    out: Path | None,
    timeout: float | None,
) -> Blame:
    """Run ``sub`` on ``feeds`` on every CPU backend here; whom it blames; the repro
    under ``out`` (when given and the nodes alone reproduce the divergence).

    Raises:
        NnkitError: the backend under test cannot run the nodes alone.
    """
    import onnx

    # Not probed first (a probe imports each runtime here): each is tried in the worker,
    # and one that does not run here is left out, saying why.
    others = [b for b in BLAME_BACKENDS if b != backend]
    answers: dict[str, dict[str, np.ndarray]] = {}
    notes: list[str] = []
    with temporary_folder("nnkit-localize-") as work:
        path = str(Path(work) / "repro.onnx")
        onnx.save(sub, path)
        for name in [backend, *others]:
            try:
                answers[name] = _run(runtimes, name, path, dict(feeds), timeout)
            except NnkitError as e:
                if name == backend:
                    raise NnkitError(
                        f"{backend} cannot run the divergent nodes alone: {e.format_message()}"
                    ) from None
                notes.append(f"{name} left out of the blame: {e.format_message()}")
    like_torch = {b: _agree(expected, got, tolerance) for b, got in answers.items()}
    ours = answers[backend]
    like_ours = {b: _agree(ours, got, tolerance) for b, got in answers.items()}
    result = Blame("unknown", [], reproduces=not like_torch[backend], notes=notes)
    if not result.reproduces:
        result.notes.append(
            f"the divergent nodes alone compute as PyTorch does on {backend}: the "
            "difference needs the rest of the graph (a fusion across them), so no repro"
        )
    elif any(like_torch[b] for b in answers if b != backend):
        result.blame = "runtime"
        result.agreeing = [b for b in answers if b != backend and like_torch[b]]
    elif len(answers) > 1 and all(like_ours.values()):
        result.blame, result.agreeing = "export", list(answers)
    elif len(answers) == 1:
        result.notes.append("no other backend runs here to tell the file from the runtime")
    else:
        result.notes.append(
            f"the runtimes ({', '.join(answers)}) disagree with each other and with PyTorch"
        )
    if result.reproduces and out is not None:
        result.repro = write_repro(out, sub, feeds, expected, backend=backend)
    return result


def write_repro(
    out: Path,
    sub: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    *,
    backend: str,
) -> Repro:
    """Write ``repro.onnx``, ``inputs.npz`` and ``expected.npz`` into ``out``, each
    atomically; the repro's paths and command."""
    import onnx

    from nnkit.npzfile import save_values

    make_folder(out, what="repro folder")
    files = {name: out / name for name in ("repro.onnx", "inputs.npz", "expected.npz")}
    with atomic_output(files["inputs.npz"]) as tmp:
        save_values(tmp, dict(feeds))
    with atomic_output(files["expected.npz"]) as tmp:
        save_values(tmp, dict(expected))
    with atomic_output(files["repro.onnx"]) as tmp:
        onnx.save(sub, str(tmp))
    command = shlex.join(
        [
            "nnkit",
            "infer",
            str(files["repro.onnx"]),
            "--provider",
            backend,
            "--input",
            str(files["inputs.npz"]),
            "--save",
            str(out / "got.npz"),
        ]
    )
    return Repro(
        onnx=str(files["repro.onnx"]),
        inputs=str(files["inputs.npz"]),
        expected=str(files["expected.npz"]),
        command=command,
    )


def _run(
    runtimes: Executor, backend: str, path: str, feeds: dict, timeout: float | None
) -> dict[str, np.ndarray]:
    from nnkit.steps import close_backend, load_backend, run_backend

    try:
        runtimes.call(load_backend, backend, path, timeout=timeout)
        got, _ = runtimes.call(run_backend, backend, path, feeds, timeout=timeout)
        return got
    finally:
        with contextlib.suppress(NnkitError):
            runtimes.call(close_backend, backend, path, timeout=timeout)


def _agree(
    reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], tolerance: Tolerance
) -> bool:
    for name, ref in reference.items():
        if name not in got:
            return False
        ref = np.asarray(ref)
        if not compare_with(name, ref, np.asarray(got[name]), tolerance.check(name, ref.dtype)):
            return False
    return True
