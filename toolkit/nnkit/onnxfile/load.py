"""Reading an ONNX file: one clear line for a file that cannot be read, and the
pre-check every runtime's file passes first (:func:`preflight`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nnkit.errors import ModelFileError, first_line
from nnkit.onnxfile.external import require_sound_external_data
from nnkit.onnxfile.graph import io_of

if TYPE_CHECKING:
    import onnx

    from nnkit.backends.base import TensorInfo


def load_model_file(path: str | Path, *, external_data: bool = True) -> onnx.ModelProto:
    """Read an ONNX file, or say in one line why it cannot be read.

    Raises:
        ModelFileError: missing, a directory, empty, not a protobuf, not a model, or an
            external data file that is missing.
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file {str(p)!r} does not exist")
    if not p.is_file():
        raise ModelFileError(f"model file {str(p)!r} is not a file")
    if p.stat().st_size == 0:
        raise ModelFileError(f"model file {str(p)!r} is empty")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(
            f"{p} is not an ONNX model (cannot parse it: {first_line(e)})"
        ) from None
    except OSError as e:
        raise ModelFileError(f"cannot read {p}: {e.strerror or e}") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise ModelFileError(
            f"{p} parses as protobuf but is not an ONNX model (no graph or IR version)"
        )
    if external_data:
        _load_external(model, p)
    return model


def _load_external(model: onnx.ModelProto, path: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model

    require_sound_external_data(model, path)
    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as e:  # onnx raises bare ValueError/OSError here
        raise ModelFileError(f"cannot load the external data of {path}: {first_line(e)}") from None


def preflight(path: str | Path) -> onnx.ModelProto:
    """Refuse a file no runtime should be handed: unreadable, or rejected by the checker.

    Runtimes are native code: some crash the interpreter on a malformed file instead of
    raising. Every backend calls this before its runtime sees the file. The check is the
    checker without full shape inference: fast, and enough to turn a truncated or
    mutated file into one clear error.

    Raises:
        ModelFileError: the file is missing, unreadable, not a model, has missing
            external data, or the checker rejects it.

    Returns:
        The model, its weights not loaded: for its declared inputs and outputs.
    """
    import onnx

    p = Path(path)
    model = load_model_file(p, external_data=False)
    require_sound_external_data(model, p)
    try:
        onnx.checker.check_model(str(p))
    except Exception as e:  # ValidationError, and others on malformed fields
        raise ModelFileError(f"{p} is not a valid ONNX model: {first_line(e)}") from None
    return model


def read_io(path: str | Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The declared inputs and outputs of the ONNX file at ``path`` (weights not loaded)."""
    return io_of(load_model_file(path, external_data=False))
