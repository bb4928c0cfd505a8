"""Planning: a request becomes ordered cells with stable ids, before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nnkit.errors import SpecError
from nnkit.matrix.plan import ModelSpec, ParityRequest, plan
from nnkit.spec import parse_spec


def test_the_zoo_plans_into_stable_cells_grouped_by_model_then_artifact() -> None:
    p = plan(ParityRequest(backends=["cpu", "reference"]))
    ids = [c.id for c in p.cells]
    assert ids[:4] == [
        "linear|dynamo|cpu",
        "linear|dynamo|reference",
        "linear|torchscript|cpu",
        "linear|torchscript|reference",
    ]
    assert len(ids) == 9 * 2 * 2 == len(set(ids))
    again = plan(ParityRequest(backends=["cpu", "reference"]))
    assert again.to_dict() == p.to_dict()  # same request, same plan, same fingerprint
    other = plan(ParityRequest(backends=["cpu"]))
    assert other.to_dict()["fingerprint"] != p.to_dict()["fingerprint"]


def test_a_plan_is_json_with_every_models_cases() -> None:
    request = ParityRequest(
        models=[ModelSpec(ref="lstm", cases=({"seq": 3},))], exporters=["torchscript"],
        backends=["cpu"],
    )  # fmt: skip
    data = json.loads(json.dumps(plan(request).to_dict()))
    (model,) = data["models"]
    assert [c["name"] for c in model["cases"]] == [
        "batch=2,seq=7", "batch=1,seq=1", "batch=5,seq=13", "batch=2,seq=3",
    ]  # fmt: skip
    assert model["artifacts"] == [
        {"id": "torchscript", "source": "export", "exporter": "torchscript", "path": None}
    ]
    assert [c["id"] for c in data["cells"]] == ["lstm|torchscript|cpu"]


def test_planning_builds_nothing_and_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from nnkit.matrix.plan import ParityRequest, ModelSpec, plan\n"
        "from nnkit.spec import parse_spec\n"
        "p = plan(ParityRequest(models=[ModelSpec(ref='some/where/net.py:Net',"
        " inputs=(parse_spec('x:batch=2x3'),))], backends=['cpu']))\n"
        "print(len(p.cells), 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    # The model's file does not even exist: nothing was imported or built.
    assert out.stdout.split() == ["2", "False"]


def test_a_model_of_its_own_keeps_its_own_settings() -> None:
    request = ParityRequest(
        models=[
            ModelSpec(ref="linear", exporters=("torchscript",)),
            ModelSpec(ref="a.py:Net", inputs=(parse_spec("x:batch=2x4"),), atol=1e-3),
        ],
        backends=["cpu"],
    )
    p = plan(request)
    assert [(c.model, c.artifact) for c in p.cells] == [
        ("linear", "torchscript"),
        ("a.py:Net", "dynamo"),
        ("a.py:Net", "torchscript"),
    ]
    assert p.models[1].spec.tolerance().atol == 1e-3


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (ModelSpec(ref="a.py:Net"), "give its inputs with --input"),
        (ModelSpec(ref="linear", inputs=(parse_spec("a:2"), parse_spec("b:2"))), "takes 1 input"),
    ],
)
def test_what_cannot_be_planned_is_refused_before_any_work(spec, error) -> None:
    with pytest.raises(SpecError, match=error):
        plan(ParityRequest(models=[spec], backends=["cpu"]))
