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

A model object works as well, with example inputs, as ``torch.onnx.testing``'s
``assert_onnx_program`` takes them; a dict binds them to ``forward`` by name::

    def test_encoder():
        model = BertModel(BertConfig(vocab_size=100, hidden_size=32, ...))
        ids = torch.randint(0, 100, (2, 16))
        assert_parity(
            model,
            example_inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
            dynamic={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
            backends=["cpu"],
        )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnkit.compare import Rule
from nnkit.parity import ParityReport, ParityRequestError, run_parity
from nnkit.spec import TensorSpec, parse_spec


def assert_parity(
    model: Any,
    *,
    example_inputs: Any = None,
    dynamic: Mapping[str, Mapping[int, str]] | None = None,
    backends: Sequence[str] | None = None,
    exporters: Sequence[str] | None = None,
    inputs: Sequence[TensorSpec | str] = (),
    cases: Sequence[str | Mapping[str, int]] = (),
    data: Any = None,
    generated_cases: bool = True,
    ignore_outputs: Sequence[str] = (),
    atol: float | None = None,
    rtol: float | None = None,
    compare: Mapping[str, Rule | str] | None = None,
    onnx: str | Path | None = None,
    strict: bool = False,
    localize: bool = False,
) -> ParityReport:
    """Assert that ``model`` exported to ONNX gives PyTorch's outputs on every runtime.

    Args:
        model: a zoo name, ``file.py:Name`` or ``module:name``; or the model itself, an
            ``nn.Module`` (put in eval mode), with ``example_inputs`` or ``inputs``.
        example_inputs: with a module object: a tensor, a tuple of tensors (bound to
            ``forward``'s parameters in order) or a dict name -> tensor (bound by name).
            The export traces with them, parity runs them as case ``example``, and the
            generated cases take their shapes, dtypes and (for integers) their
            ``[min, max]``.
        dynamic: with ``example_inputs``: the dynamic dims per input,
            ``{"input_ids": {0: "batch", 1: "seq"}}``.
        backends: the backends to check; every one that runs here when None. One named
            that cannot run here raises :class:`~nnkit.errors.NnkitError`, not a skip.
        exporters: ``dynamo`` and/or ``torchscript``; both when None (not with ``onnx``).
        inputs: input specs, as :class:`~nnkit.spec.TensorSpec` or text
            (``"ids:batch=2xseq=16:int64[0,100)"``); required outside the zoo unless
            ``example_inputs`` are given.
        cases: chosen sizes of the dynamic dims (``"batch=1,seq=128"`` or a dict).
        data: real inputs: a ``.npz`` file, a folder of them, or case name -> arrays.
        generated_cases: False runs only the cases given (``cases``, ``data``, examples).
        ignore_outputs: outputs left out of the export and the comparison.
        atol: explicit absolute tolerance for every output; the scale-aware default
            (see :mod:`nnkit.compare`) when None.
        rtol: explicit relative tolerance; the model's, else per dtype, when None.
        compare: a rule per output name, as ``nnkit parity --compare`` takes them:
            ``{"logits": "cosine:min=0.999", "labels": "exact", "scores": "set"}``.
        onnx: check this ONNX file instead of exporting.
        strict: fail on a runtime that cannot load or run the model, and on warnings
            (a degenerate reference: all zeros, constant, ties, ...), too.
        localize: on a mismatch, find the first module and ONNX node(s) that differ and
            whom to blame (:mod:`nnkit.localize`); the message says so (no repro written).

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
    target = model
    if not isinstance(model, str):
        from nnkit.resolve import resolve_object

        target = resolve_object(
            model,
            example_inputs=example_inputs,
            inputs=specs,
            dynamic=dynamic,
            ignore_outputs=ignore_outputs,
        )
    elif example_inputs is not None or dynamic is not None:
        raise ParityRequestError(
            f"example_inputs and dynamic go with a model object; {model!r} is a reference: "
            "give its inputs as specs (inputs=[...])"
        )
    report = run_parity(
        [target],
        inputs=specs,
        cases=cases,
        data=data,
        generated_cases=generated_cases,
        ignore_outputs=ignore_outputs,
        atol=atol,
        rtol=rtol,
        compare=compare,
        backends=backends,
        exporters=exporters,
        onnx=onnx,
        strict=strict,
        localize=localize,
    )
    if not report:
        name = model if isinstance(model, str) else report.models[0]
        raise AssertionError(f"parity failed for {name!r}\n{render_console(report)}")
    return report
