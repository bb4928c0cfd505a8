"""The parity matrix as data: plan a request into cells, execute them, keep the results.

- :mod:`nnkit.matrix.plan`: :class:`ParityRequest` (every option of a run, per model
  where a model has its own) -> :class:`Plan` (models x artifacts x backends, stable
  cell ids, every model's cases), with nothing built or run.
- :mod:`nnkit.matrix.execute`: a plan (or some of its cells) -> results, in worker
  processes; the one place failures are caught.
- :mod:`nnkit.matrix.results`: :class:`ParityReport`, JSON in and out.
- :mod:`nnkit.matrix.cases`: the cases each model runs.
- :mod:`nnkit.matrix.config`: a manifest (``nnkit.toml``) read into a request.
"""

from nnkit.matrix.plan import ModelSpec, ParityRequest, Plan, plan
from nnkit.matrix.results import CaseResult, Cell, ParityReport

__all__ = [
    "CaseResult",
    "Cell",
    "ModelSpec",
    "ParityReport",
    "ParityRequest",
    "Plan",
    "plan",
]
