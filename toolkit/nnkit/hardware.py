"""Moved to :mod:`nnkit.machine`: re-exported here until the last callers switch.

``nnkit.parity`` and ``nnkit.backends.onnxruntime`` still import from here; everything
else imports :mod:`nnkit.machine`. Delete this module once they do.
"""

from __future__ import annotations

from nnkit.machine import VECTOR_FLAGS, CPUInfo, cpu_info, gpu_note, nvidia_gpus

__all__ = ["VECTOR_FLAGS", "CPUInfo", "cpu_info", "gpu_note", "nvidia_gpus"]
