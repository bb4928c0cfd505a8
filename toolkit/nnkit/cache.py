"""The export cache: a model exported once is reused while nothing it depends on changed.

An entry's key is a hash of everything that shapes the exported file
(:func:`key_parts`, computed in the worker where the model is built):

- the model's code: the file (or module) it is built from, the files of the classes of
  every submodule, and the modules loaded from the model file's folder (the helpers it
  imports); for a zoo model, every file of :mod:`nnkit.models`; each by its content;
- its weights: a hash of every parameter and buffer (name, dtype, shape, bytes);
- its input specs (names, dims, dtypes, value ranges), outputs and left-out outputs,
  and example inputs given with an object;
- the exporter and its options, the opset;
- the versions of torch, onnx, onnxscript, Python and nnkit, and the content of nnkit's
  own code that writes the file (export, output dims, graph edits).

An entry is a folder ``exports/<kk>/<key>/`` holding ``model.onnx`` and ``entry.json``
(its sha256, size, the export's notes and seconds, the key's parts). It is written in a
folder of its own and renamed into place, so a reader sees a whole entry or none, and of
two processes filling one entry at once the first rename wins and the other is dropped.
On read the file is copied while its hash is computed: a file that does not match its
recorded sha256 (corrupted, edited) is never used; the entry is removed, the model is
exported afresh and a note says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnkit.resolve import ResolvedModel
    from nnkit.steps import ModelRequest
    from nnkit.worker import InProcess, Worker

#: Version of an entry's layout: entries of another layout are never read.
FORMAT = 1
#: nnkit's own files that shape an exported file (beside nnkit's version).
NNKIT_EXPORT_CODE = ("export.py", "output_dims.py", "binding.py", "resolve.py", "onnxfile")
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nnkit``, else ``~/.cache/nnkit``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nnkit"


# -- the key (computed in the worker, where the model is built) -----------------------------


def key_parts(request: ModelRequest, **options: Any) -> dict[str, Any]:
    """What an export of the model ``request`` names depends on, as JSON-able parts.

    ``options`` are :func:`nnkit.export.export_model`'s (``exporter``, ``opset``...).
    """
    from nnkit.steps import resolved

    m = resolved(request)
    return {
        "format": FORMAT,
        "model": m.name,
        "code": code_hash(m),
        "weights": weights_hash(m.module),
        "inputs": [str(s) for s in m.inputs],
        "outputs": list(m.outputs),
        "ignored": list(m.ignored),
        "examples": _arrays_hash(m.examples) if m.examples else None,
        "options": {k: options[k] for k in sorted(options)},
        "versions": _versions(),
        "nnkit_code": _files_hash(_nnkit_files()),
    }


def key_of(parts: dict[str, Any]) -> str:
    """The entry's name: a sha256 of the parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def weights_hash(module: Any) -> str:
    """A sha256 of a module's parameters and buffers: name, dtype, shape and bytes."""
    import torch

    h = hashlib.sha256()
    tensors = dict(module.state_dict(keep_vars=False))
    tensors.update({f"buffer:{k}": v for k, v in module.named_buffers()})
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r};".encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def code_hash(model: ResolvedModel) -> str:
    """A sha256 of the content of the model's code files (see the module docstring)."""
    return _files_hash(code_files(model))


def code_files(model: ResolvedModel) -> list[Path]:
    """The files the model's code comes from, each once."""
    import inspect

    import torch

    import nnkit.models
    from nnkit.models import ZOO

    torch_dir = Path(torch.__file__).resolve().parent
    files: list[Path] = []
    if model.zoo or model.name in ZOO:
        files += sorted(Path(nnkit.models.__file__).resolve().parent.glob("*.py"))
    own = _ref_file(model.name)
    if own is not None:
        files.append(own)
        if "site-packages" not in str(own):
            files += _loaded_under(own.parent)
    for sub in model.module.modules():
        with contextlib.suppress(TypeError, OSError):
            found = inspect.getsourcefile(type(sub))
            if found and not Path(found).resolve().is_relative_to(torch_dir):
                files.append(Path(found).resolve())
    return list(dict.fromkeys(f for f in files if f.is_file()))


def _ref_file(ref: str) -> Path | None:
    """The file a ``file.py:Name`` or ``module:name`` reference is built from."""
    import importlib.util

    from nnkit.export import model_source_file

    source = model_source_file(ref)
    if source is not None:
        return source
    module, sep, _ = ref.rpartition(":")
    if not sep:
        return None
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            return Path(spec.origin).resolve()
    return None


def _loaded_under(folder: Path) -> list[Path]:
    """Files of the loaded modules that live under ``folder`` (a model's own helpers)."""
    found = []
    for module in list(sys.modules.values()):
        where = getattr(module, "__file__", None)
        if not where or "site-packages" in where:
            continue
        path = Path(where).resolve()
        if path.suffix == ".py" and path.is_relative_to(folder):
            found.append(path)
    return sorted(found)


def _nnkit_files() -> list[Path]:
    root = Path(__file__).resolve().parent
    files: list[Path] = []
    for name in NNKIT_EXPORT_CODE:
        p = root / name
        files += sorted(p.glob("*.py")) if p.is_dir() else [p]
    return files


def _files_hash(files: list[Path]) -> str:
    """A sha256 of the files' contents (sorted, so their order and paths do not matter)."""
    digests = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _arrays_hash(arrays: dict[str, Any]) -> str:
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import importlib.metadata

    from nnkit import __version__

    found = {"nnkit": __version__, "python": sys.version.split()[0]}
    for dist in ("torch", "onnx", "onnxscript"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "missing"
    return found


def cache_key(
    user: Worker | InProcess, request: ModelRequest, exporter: str, timeout: float | None
) -> tuple[str, dict[str, Any]]:
    """The key (and its parts) of exporting ``request`` with ``exporter``, computed where
    the model is built; ``("", {})`` when it cannot be (the export then runs uncached)."""
    from nnkit.errors import NnkitError

    try:
        parts = user.call(key_parts, request, exporter=exporter, timeout=timeout)
    except NnkitError:
        return "", {}
    return key_of(parts), parts


def restamp(path: Path, ref: str) -> None:
    """Stamp a cached file's ``nnkit.model_file`` relative to where it now lives (the
    entry was made elsewhere); nothing for a model that is not built from a file."""
    from nnkit.export import model_source_file

    source = model_source_file(ref)
    if source is None:
        return
    import onnx

    from nnkit.onnxfile import set_metadata

    proto = onnx.load(str(path))
    set_metadata(proto, {"nnkit.model_file": os.path.relpath(source, path.resolve().parent)})
    onnx.save(proto, str(path))


# -- entries ------------------------------------------------------------------------------


@dataclass
class Entry:
    """An export found in the cache and copied out, verified."""

    key: str
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class ExportCache:
    """The cache folder ``root`` (created when first filled)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        return self.root / "exports" / key[:2] / key

    def fetch(self, key: str, dest: Path) -> tuple[Entry | None, str]:
        """Copy the entry ``key`` to ``dest`` if it is there and whole.

        Returns:
            ``(entry, "")`` on a hit; ``(None, "")`` when there is no entry; ``(None,
            note)`` when the entry is damaged (it is removed; the note says what was
            wrong). ``dest`` is written only on a hit.
        """
        folder = self.folder(key)
        try:
            meta = json.loads((folder / "entry.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, ""
        except (OSError, ValueError, UnicodeDecodeError) as e:
            return None, self._damaged(folder, f"its entry.json cannot be read ({e})")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "sha256" not in meta:
            return None, self._damaged(folder, "its entry.json is not an entry of this nnkit")
        tmp = dest.with_name(f".{dest.name}.cache.tmp")
        try:
            digest = _copy_hashed(folder / "model.onnx", tmp)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return None, self._damaged(folder, f"its file cannot be read ({e.strerror or e})")
        if digest != meta["sha256"]:
            tmp.unlink()
            return None, self._damaged(
                folder,
                f"its file's sha256 is {digest[:12]}..., not the {meta['sha256'][:12]}... "
                "recorded (corrupted or edited)",
            )
        os.replace(tmp, dest)
        return Entry(key, list(meta.get("notes", [])), float(meta.get("seconds", 0.0))), ""

    def store(
        self, key: str, parts: dict[str, Any], source: Path, notes: list[str], seconds: float
    ) -> str:
        """Put the file ``source`` in the cache as ``key``; "" when stored (or another
        process stored it first), else why not (a note: the run goes on)."""
        exports = self.root / "exports"
        final = self.folder(key)
        try:
            exports.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".fill-", dir=exports))
        except OSError as e:
            return f"the export was not cached: cannot write {str(exports)!r} ({e.strerror or e})"
        try:
            digest = _copy_hashed(source, work / "model.onnx")
            meta = {
                "format": FORMAT,
                "key": key,
                "sha256": digest,
                "size": (work / "model.onnx").stat().st_size,
                "notes": list(notes),
                "seconds": round(seconds, 3),
                "parts": parts,
            }
            (work / "entry.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, final)  # atomic; refused when the entry is there
            except OSError:
                if not (final / "entry.json").is_file():
                    raise
                # Another process filled this entry first: its file serves as well.
        except OSError as e:
            return f"the export was not cached: {e.strerror or e}"
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return ""

    def _damaged(self, folder: Path, why: str) -> str:
        """Remove a damaged entry (renamed away first: a reader never sees half of it)."""
        trash = folder.with_name(f".damaged-{folder.name}-{os.getpid()}")
        with contextlib.suppress(OSError):
            os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return f"the export cache's entry {folder} was not used: {why}; exported afresh"


def _copy_hashed(source: Path, dest: Path) -> str:
    """Copy ``source`` to ``dest``; the sha256 of the bytes copied."""
    h = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            dst.write(chunk)
    return h.hexdigest()
