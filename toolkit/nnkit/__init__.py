"""nnkit: export PyTorch models to ONNX, validate them, and check every runtime against PyTorch.

Importing ``nnkit`` imports neither torch nor any runtime: each is imported by the
function that needs it.
"""

#: The version: the one source of truth, read by pyproject.toml (so the wheel's metadata),
#: shown by ``nnkit --version`` and stamped in every exported file (``nnkit.version``).
#: CHANGELOG.md's newest release carries the same number (a test checks).
__version__ = "0.1.0"

#: The distribution name on PyPI, which install hints name (``pip install 'nnkit-onnx[plot]'``):
#: ``nnkit`` there is another project. pyproject.toml's ``name`` is the same (a test checks).
DISTRIBUTION = "nnkit-onnx"
