"""Variants: the graph rewrites users ship, each a kept library's call on the base file.

A *variant* is the base ONNX file rewritten by one tool (:mod:`nnkit.rewrites.tools`):

``slim``
    onnxslim (constant folding, dead nodes, fusions; standard ops only).
``optimized``
    onnxruntime's offline optimization at ``ORT_ENABLE_EXTENDED`` with the CPU
    provider: onnxruntime's fused ops (``com.microsoft``), which other runtimes cannot
    load (their cells are ``unsupported`` and say why).
``fp16``
    float16 weights and compute, float32 inputs and outputs (onnxruntime's transformer
    tools, ``keep_io_types``).
``int8-dynamic``
    ``onnxruntime.quantization.quantize_dynamic``.
``int8-static``
    ``onnxruntime.quantization.quantize_static``, QDQ, MinMax calibration over
    :data:`CALIBRATION_SAMPLES` seeded inputs at the model's example size, drawn from
    seeds (:data:`CALIBRATION_SEEDS`) that no test case uses.

:func:`rewrite_file` writes a variant beside nothing else: checked with the full ONNX
checker, written atomically (a rewrite that fails leaves no file), stamped with
provenance (``nnkit.variant*`` metadata: the rewrite, its settings, the tool and its
version, the base file's SHA-256), keeping the base file's own metadata (the model and
its input specs), so ``nnkit parity --onnx model.fp16.onnx`` works as on the base.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnkit.errors import NnkitError, first_line

if TYPE_CHECKING:
    import onnx

    from nnkit.backends.base import TensorInfo
    from nnkit.spec import TensorSpec

#: The base artifact: the file as exported (or given), no rewrite.
BASE = "base"
#: Every variant, in the order matrices show them.
VARIANTS = (BASE, "slim", "optimized", "fp16", "int8-dynamic", "int8-static")
#: The optional dependencies' extra (``pip install 'nnkit-onnx[rewrite]'``).
EXTRA = "rewrite"
#: Seeds of ``int8-static``'s calibration inputs: apart from the export's (0) and every
#: case's (1, 2, 3, then 4 upward for ``--case``).
CALIBRATION_SEEDS = tuple(range(1000, 1016))
#: How many calibration inputs ``int8-static`` sees (each at the model's example size).
CALIBRATION_SAMPLES = len(CALIBRATION_SEEDS)
#: Metadata keys a variant's provenance is written under.
META_VARIANT = "nnkit.variant"


class RewriteError(NnkitError):
    """A rewrite that did not produce a valid file (the tool raised, or the checker
    refused what it wrote)."""


class RewriteUnavailableError(NnkitError):
    """A rewrite whose library is not installed (exit status 2, naming the extra)."""


@dataclass(frozen=True)
class _Tool:
    """A rewrite: its function, the module it needs and the distribution that has it."""

    run: Callable[..., tuple[onnx.ModelProto, dict[str, Any]]]
    module: str
    distribution: str
    what: str


def _tools() -> dict[str, _Tool]:
    from nnkit.rewrites import tools

    ort = "onnxruntime"
    return {
        "slim": _Tool(tools.slim, "onnxslim", "onnxslim", "onnxslim"),
        "optimized": _Tool(tools.optimized, ort, ort, "onnxruntime offline optimization"),
        "fp16": _Tool(tools.fp16, "onnxruntime.transformers", ort, "onnxruntime float16"),
        "int8-dynamic": _Tool(
            tools.int8_dynamic, "onnxruntime.quantization", ort, "onnxruntime quantize_dynamic"
        ),
        "int8-static": _Tool(
            tools.int8_static, "onnxruntime.quantization", ort, "onnxruntime quantize_static"
        ),
    }


def parse_variants(names: Sequence[str]) -> list[str]:
    """The variants named, each once, in the order given, ``base`` first.

    ``base`` is always run: a variant is judged beside the file it was made from (and
    timed against it).

    Raises:
        RewriteUnavailableError: an unknown name (listing the valid ones).
    """
    for name in names:
        if name not in VARIANTS:
            raise RewriteUnavailableError(
                f"unknown variant {name!r}: valid variants are {', '.join(VARIANTS)}"
            )
    return [BASE, *dict.fromkeys(n for n in names if n != BASE)]


def require_tools(variants: Sequence[str]) -> None:
    """Refuse, before any work, a variant whose library is not installed.

    Raises:
        RewriteUnavailableError: one line naming the library and the extra to install.
    """
    tools = _tools()
    for name in parse_variants(variants):
        if name == BASE:
            continue
        tool = tools[name]
        try:
            found = importlib.util.find_spec(tool.module) is not None
        except ImportError:  # the parent package is missing
            found = False
        if not found:
            raise RewriteUnavailableError(
                f"variant {name!r} needs {tool.distribution}, which is not installed: "
                f"pip install 'nnkit-onnx[{EXTRA}]'"
            )


def variant_path(base: str | Path, variant: str) -> Path:
    """Where a variant of ``base`` is written: ``model.onnx`` -> ``model.fp16.onnx``."""
    p = Path(base)
    stem = p.name[: -len(".onnx")] if p.name.lower().endswith(".onnx") else p.name
    return p.with_name(f"{stem}.{variant}.onnx")


def calibration_feeds(specs: Sequence[TensorSpec | TensorInfo]) -> list[dict[str, np.ndarray]]:
    """``int8-static``'s calibration inputs: one per :data:`CALIBRATION_SEEDS` seed, at
    the specs' example sizes (a file's declared inputs: symbolic dims at 1), generated as
    the test cases are, from other seeds."""
    from nnkit.inputs import generate

    return [generate(specs, seed=seed) for seed in CALIBRATION_SEEDS]


@dataclass
class RewriteResult:
    """A variant written: where, by what, with which settings, from which base file."""

    variant: str
    path: Path
    tool: str
    settings: dict[str, Any]
    base_sha256: str
    seconds: float
    size_bytes: int
    base_size_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "path": str(self.path),
            "tool": self.tool,
            "settings": dict(self.settings),
            "base_sha256": self.base_sha256,
            "seconds": round(self.seconds, 3),
            "size_bytes": self.size_bytes,
            "base_size_bytes": self.base_size_bytes,
            "notes": list(self.notes),
        }


def rewrite_file(
    variant: str,
    base: str | Path,
    out: str | Path,
    *,
    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> RewriteResult:
    """Rewrite the ONNX file ``base`` into ``out`` as ``variant``; checked, atomic, stamped.

    Args:
        variant: one of :data:`VARIANTS` but ``base``.
        base: the file to rewrite (never changed).
        out: the file to write; written only when the rewrite and the check succeed.
        calibration: ``int8-static``'s inputs (default: :func:`calibration_feeds` of the
            specs stamped in ``base``).

    Raises:
        RewriteUnavailableError: an unknown variant, or its library is missing.
        RewriteError: the tool failed, or wrote a file the checker refuses.
        ModelFileError: ``base`` cannot be read.
        OutputPathError: ``out`` cannot be written.
    """
    from nnkit.check import check_file
    from nnkit.fsutil import atomic_output, check_writable
    from nnkit.onnxfile import io_of, load_model_file, metadata, set_metadata, stamped_specs
    from nnkit.quiet import captured

    if variant == BASE or variant not in VARIANTS:
        valid = ", ".join(v for v in VARIANTS if v != BASE)
        raise RewriteUnavailableError(f"unknown rewrite {variant!r}: valid rewrites are {valid}")
    require_tools([variant])
    tool = _tools()[variant]
    target = check_writable(out)
    base = Path(base)
    data = base.read_bytes()
    proto = load_model_file(base)
    kept = metadata(proto)
    args: tuple[Any, ...] = ()
    if variant == "int8-static":
        if calibration is None:
            # nnkit's stamp (example sizes), else the declared inputs (symbolic dims at 1)
            specs: Sequence[Any] = stamped_specs(proto) or io_of(proto)[0]
            if not specs:
                raise RewriteError(
                    f"int8-static needs calibration inputs: {base} has no inputs to calibrate on"
                )
            calibration = calibration_feeds(specs)
        args = (list(calibration),)
    version = _version(tool.distribution)
    start = time.perf_counter()
    try:
        with captured():
            rewritten, settings = tool.run(proto, *args)
    except Exception as e:
        raise RewriteError(
            f"{variant} ({tool.what} {version}) failed on {base.name}: {first_line(e)}"
        ) from None
    seconds = time.perf_counter() - start
    stamp = {k: v for k, v in kept.items() if k not in metadata(rewritten)}
    stamp.update(
        {
            META_VARIANT: variant,
            f"{META_VARIANT}.tool": f"{tool.distribution} {version}",
            f"{META_VARIANT}.settings": json.dumps(settings, sort_keys=True),
            f"{META_VARIANT}.base_sha256": hashlib.sha256(data).hexdigest(),
            f"{META_VARIANT}.base_file": base.name,
        }
    )
    set_metadata(rewritten, stamp, replace_prefix=f"{META_VARIANT}.")
    with atomic_output(target) as tmp:
        import onnx

        onnx.save(rewritten, str(tmp))
        verdict = check_file(tmp)
        if not verdict:
            raise RewriteError(
                f"{variant} ({tool.what} {version}) wrote a file the ONNX checker refuses: "
                f"{verdict.errors[0]}"
            )
        size = tmp.stat().st_size
    return RewriteResult(
        variant=variant,
        path=target,
        tool=f"{tool.distribution} {version}",
        settings=settings,
        base_sha256=stamp[f"{META_VARIANT}.base_sha256"],
        seconds=seconds,
        size_bytes=size,
        base_size_bytes=len(data),
        notes=_notes(rewritten),
    )


def _notes(model: onnx.ModelProto) -> list[str]:
    """What a user should know about a variant: operators outside the ONNX standard."""
    custom: dict[str, set[str]] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx", "ai.onnx.ml"):
            custom.setdefault(node.domain, set()).add(node.op_type)
    return [
        f"holds {domain} operators ({', '.join(sorted(ops))}), outside the ONNX standard: "
        "a runtime that does not implement them cannot load it"
        for domain, ops in sorted(custom.items())
    ]


def _version(distribution: str) -> str:
    from importlib import metadata

    for name in (distribution, f"{distribution}-gpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"
