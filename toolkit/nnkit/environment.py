"""What a run ran on, as one record for every report: versions, backends, machine.

``nnkit parity``'s report, ``nnkit bench --json`` and ``nnkit doctor --json`` carry the
same record, :func:`environment`::

    {"versions": {"nnkit": ..., "python": ..., "numpy": ..., "onnx": ..., ...},
     "backends": {"cpu": "1.31.0", ...},
     "machine": {"platform": ..., "architecture": ..., "cpu": ..., "cores": ...}}

Package versions come from the imported module where it is imported, else from the
installed distribution's metadata: nothing is imported to read a version (torch
stays unimported where it was).
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys
from collections.abc import Sequence
from typing import Any

#: Packages whose versions are reported: shown name -> distributions, first found wins.
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "onnxscript": ("onnxscript",),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino"),
    "openvino": ("openvino",),
    "tract": ("tract",),
    "torch": ("torch",),
}


def package_versions() -> dict[str, dict[str, str | None]]:
    """Shown name -> ``{"distribution": ..., "version": ...}`` (both None when absent)."""
    out: dict[str, dict[str, str | None]] = {}
    for shown, dists in PACKAGES.items():
        out[shown] = {"distribution": None, "version": None}
        for dist in dists:
            try:
                out[shown] = {"distribution": dist, "version": md.version(dist)}
                break
            except md.PackageNotFoundError:
                continue
    return out


def versions() -> dict[str, str | None]:
    """nnkit, Python and each of :data:`PACKAGES`: name -> version (None when absent).

    A package already imported reports its module's ``__version__`` (what actually ran);
    one that is not is never imported for it.
    """
    from nnkit import __version__

    installed = package_versions()
    out: dict[str, str | None] = {"nnkit": __version__, "python": platform.python_version()}
    for shown in PACKAGES:
        module = sys.modules.get(shown)
        version = getattr(module, "__version__", None) if module is not None else None
        out[shown] = version if isinstance(version, str) else installed[shown]["version"]
    return out


def environment(backends: Sequence[str]) -> dict[str, Any]:
    """The record of what a run ran on: package versions, each backend's, the machine.

    Args:
        backends: registry names; each is probed (once per process, see
            :func:`nnkit.backends.probe`) for its runtime's version, None where it
            cannot run. ``torch`` imports torch; leave it out to keep a process free of it.

    Returns:
        ``{"versions": {...}, "backends": {name: version}, "machine": {"platform",
        "architecture", "cpu", "cores"}}``; ``cores`` counts the CPUs this process may use.
    """
    from nnkit.backends import probe
    from nnkit.machine import cpu_info

    cpu = cpu_info()
    return {
        "versions": versions(),
        "backends": {name: probe(name).version for name in backends},
        "machine": {
            "platform": platform.platform(),
            "architecture": cpu.architecture,
            "cpu": cpu.model,
            "cores": cpu.usable_cores,
        },
    }
