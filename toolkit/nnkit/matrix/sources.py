"""Where a plan's columns and rows come from: the backends asked for (each probed) and
the model an ``--onnx`` file names in its metadata (trusted or not)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nnkit.errors import BackendUnavailableError
from nnkit.matrix.cases import ParityRequestError


def select_backends(names: Sequence[str] | None) -> list[str]:
    """The backends to check: those named (each probed, refused if it cannot run here),
    or every ONNX backend that runs here.

    Raises:
        NnkitError: an unknown name, or ``torch`` (the reference).
        BackendUnavailableError: a backend named that cannot run here, with the reason.
    """
    from nnkit.backends import available, check_name, require

    if names is None:
        found = available()
        usable = [n for n, reason in found.items() if reason is None]
        if not usable:
            reasons = "; ".join(r for r in found.values() if r)
            raise BackendUnavailableError(f"no ONNX backend runs on this machine: {reasons}")
        return usable
    chosen = list(dict.fromkeys(names))
    if not chosen:
        raise ParityRequestError("no backends given")
    for name in chosen:
        check_name(name)  # torch, the reference, is refused with its own message
    for name in chosen:
        require(name)
    return chosen


def model_from_metadata(meta: Mapping[str, str], onnx: Path, *, trust: bool) -> str:
    """The model an ONNX file names in its metadata, as a reference to build.

    A zoo name is nnkit's own code. Anything else is code the file points at: it is
    imported only when the user says so (``trust``), because a file received from
    someone else must never run their code. A file reference is found relative to the
    ONNX file (``nnkit.model_file``, stamped at export), so the check works from any
    folder.

    Raises:
        ParityRequestError: the reference is not trusted, or its file cannot be found.
    """
    from nnkit.models import ZOO

    named = meta["nnkit.model"]
    if named in ZOO:
        return named
    if not trust:
        raise ParityRequestError(
            f"{onnx} names its model as {named!r} in its metadata; nnkit never imports code "
            f"named inside a file it is given: name the model on the command line "
            f"(nnkit parity MODEL --onnx {onnx}), or pass --trust-metadata if you trust the file"
        )
    where, sep, name = named.rpartition(":")
    if not sep or not (where.endswith(".py") or "/" in where):
        return named  # module:name, imported from the Python path
    stamped = meta.get("nnkit.model_file")
    candidates = [onnx.parent / stamped] if stamped else []
    candidates.append(Path(where))
    for candidate in candidates:
        if candidate.is_file():
            return f"{candidate}:{name}"
    looked = " or ".join(repr(str(c)) for c in candidates)
    raise ParityRequestError(
        f"{onnx} names its model as {named!r}, but its source is not at {looked}: "
        "name the model on the command line (nnkit parity MODEL --onnx FILE)"
    )
