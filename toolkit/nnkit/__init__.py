"""nnkit: export PyTorch models to ONNX, validate them, and check every runtime against PyTorch.

Importing ``nnkit`` imports neither torch nor any runtime: each is imported by the
function that needs it.
"""

__version__ = "0.1.0"
