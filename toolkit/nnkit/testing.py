"""Parity as a pytest assertion, for users' own test suites.

:func:`assert_parity` runs the parity matrix (:func:`nnkit.parity.run_parity`) and
raises :class:`AssertionError` carrying the numbers when any cell fails, so a test
suite checks that its model still exports and runs the same on every runtime::

    # tests/test_export_parity.py
    import pytest
    from nnkit.testing import assert_parity

    @pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
    def test_my_net_matches_pytorch_everywhere(exporter):
        assert_parity(
            "src/mynet/model.py:make_net",
            inputs=["x:batch=2x3x64x64"],
            exporters=[exporter],
            backends=["cpu", "openvino"],
            rtol=1e-3,
        )

    def test_shipped_artifact_still_matches_the_code():
        assert_parity("src/mynet/model.py:make_net", onnx="artifacts/mynet.onnx",
                      inputs=["x:batch=2x3x64x64"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nnkit.compare import Rule
from nnkit.parity import ParityReport, run_parity
from nnkit.spec import TensorSpec, parse_spec


def assert_parity(
    model: str,
    *,
    backends: Sequence[str] | None = None,
    exporters: Sequence[str] | None = None,
    inputs: Sequence[TensorSpec | str] = (),
    atol: float | None = None,
    rtol: float | None = None,
    compare: Mapping[str, Rule | str] | None = None,
    onnx: str | Path | None = None,
    strict: bool = False,
) -> ParityReport:
    """Assert that ``model`` exported to ONNX gives PyTorch's outputs on every runtime.

    Args:
        model: a zoo name, ``file.py:Name`` or ``module:name``.
        backends: the backends to check; every one that runs here when None. One named
            that cannot run here raises :class:`~nnkit.errors.NnkitError`, not a skip.
        exporters: ``dynamo`` and/or ``torchscript``; both when None (not with ``onnx``).
        inputs: input specs, as :class:`~nnkit.spec.TensorSpec` or text
            (``"x:batch=2x3x32x32"``); required outside the zoo.
        atol: explicit absolute tolerance for every output; the scale-aware default
            (see :mod:`nnkit.compare`) when None.
        rtol: explicit relative tolerance; the model's, else per dtype, when None.
        compare: a rule per output name, as ``nnkit parity --compare`` takes them:
            ``{"logits": "cosine:min=0.999", "labels": "exact", "scores": "set"}``.
        onnx: check this ONNX file instead of exporting.
        strict: fail on a runtime that cannot load or run the model, and on warnings
            (a degenerate reference: all zeros, constant, ties, ...), too.

    Returns:
        The report, when parity holds (for more checks of your own).

    Raises:
        AssertionError: a mismatch or an error (or, with ``strict``, an unsupported
            cell); the message has the grid, each failing case's numbers and the
            smallest tolerances that would have passed.
        NnkitError: the request cannot be carried out (unknown model or backend, a bad
            tolerance or rule, an output name the model has not, ...).
    """
    from nnkit.report import render_console

    specs = [s if isinstance(s, TensorSpec) else parse_spec(s) for s in inputs]
    report = run_parity(
        [model],
        backends=backends,
        exporters=exporters,
        inputs=specs,
        atol=atol,
        rtol=rtol,
        compare=compare,
        onnx=onnx,
        strict=strict,
    )
    if not report:
        raise AssertionError(f"parity failed for {model!r}\n{render_console(report)}")
    return report
