"""``nnkit doctor``: what this machine can run, probed for real.

Versions come from package metadata (:mod:`nnkit.environment`); every ONNX backend is probed by loading and running
a tiny model (never by asking a runtime what it claims). torch is checked in a child
process, so the doctor itself never imports it. The report is data: a backend that
cannot run is a row with its reason, not a failure.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

from nnkit import __version__
from nnkit.environment import package_versions

#: Seconds the torch child process may take to import torch.
TORCH_PROBE_TIMEOUT = 120


def probe_torch() -> dict[str, Any]:
    """Import torch and run a ReLU in a child process; this process never imports torch."""
    code = (
        "import torch; y = torch.nn.ReLU()(torch.tensor([-1.0, 2.0])); "
        "assert y.tolist() == [0.0, 2.0]; print(torch.__version__)"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=TORCH_PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _row("torch", None, f"torch: import took over {TORCH_PROBE_TIMEOUT} s")
    if done.returncode == 0:
        return _row("torch", done.stdout.strip().splitlines()[-1], None)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    why = lines[-1].strip() if lines else f"exit status {done.returncode}"
    if "No module named 'torch'" in why:
        why = "the torch package is not installed; install it with: pip install torch"
    return _row("torch", None, f"torch: {why}")


def _row(name: str, version: str | None, reason: str | None) -> dict[str, Any]:
    from nnkit.backends import backend_requirement

    return {
        "name": name,
        "status": "ok" if reason is None else "unavailable",
        "version": version,
        "reason": reason,
        "requirement": backend_requirement(name),
    }


def backend_rows(*, include_torch: bool = True) -> list[dict[str, Any]]:
    """The PyTorch reference's row (probed in a child process), then one row per
    registered backend, in registry order, each probed for real."""
    from nnkit.backends import BACKENDS, probe

    rows = [probe_torch()] if include_torch else []
    for name in BACKENDS:
        result = probe(name)
        rows.append(_row(name, result.version, result.reason))
    return rows


def collect(*, include_torch: bool = True) -> dict[str, Any]:
    """The whole report, as the ``nnkit doctor --json`` object.

    Its ``environment`` is the record every report carries
    (:func:`nnkit.environment.environment`), over the ONNX backends: the doctor never
    imports torch (its version there is the installed one).
    """
    from dataclasses import asdict

    from nnkit.backends import BACKENDS
    from nnkit.environment import environment
    from nnkit.machine import cpu_info, nvidia_gpus

    return {
        "nnkit": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": platform.platform(),
        "packages": package_versions(),
        "backends": backend_rows(include_torch=include_torch),
        "cpu": asdict(cpu_info()),
        "gpus": nvidia_gpus(),
        "environment": environment(list(BACKENDS)),
    }


def render(report: dict[str, Any]) -> str:
    """The report as text: a header, the packages, a table of backends, the hardware."""
    py = report["python"]
    lines = [
        f"nnkit {report['nnkit']}  Python {py['version']} ({py['implementation']})  "
        f"{report['platform']}",
        "",
        "packages:",
    ]
    for shown, pkg in report["packages"].items():
        version = pkg["version"] or "not installed"
        dist = f" ({pkg['distribution']})" if pkg["distribution"] not in (None, shown) else ""
        lines.append(f"  {shown:<12} {version}{dist}")
    lines += ["", "backends:"]
    width = max(len(r["name"]) for r in report["backends"])
    for r in report["backends"]:
        detail = r["version"] if r["status"] == "ok" else r["reason"]
        lines.append(f"  {r['name']:<{width}}  {r['status']:<11}  {detail}")
    cpu = report["cpu"]
    lines += [
        "",
        f"cpu: {cpu['model']} ({cpu['architecture']}), {cpu['logical_cores']} logical cores, "
        f"{cpu['usable_cores']} usable by this process",
        f"vector extensions: {', '.join(cpu['vector_extensions']) or 'none found'}",
        f"gpus: {', '.join(report['gpus']) or 'no NVIDIA GPU found'}",
    ]
    return "\n".join(lines)
