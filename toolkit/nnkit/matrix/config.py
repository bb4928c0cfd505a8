"""A manifest of models for ``nnkit parity --config nnkit.toml``.

One ``--input`` list cannot describe a real project: each model has its own inputs,
value ranges, cases, tolerances and comparison modes. A manifest is a TOML file (read
with the standard library's ``tomllib``) with the run's settings under ``[parity]``
and one ``[[model]]`` table per model::

    [parity]
    backends = ["cpu", "openvino"]      # default: every backend that runs here
    exporters = ["dynamo", "torchscript"]
    strict = false
    timeout = 600
    artifacts = "reports/onnx"          # relative to this file
    variants = ["fp16", "int8-static"]  # rewrites checked too (base always runs)
    budget = ["int8-static:cosine=0.995"]

    [[model]]
    ref = "models/net.py:make_net"      # zoo name, file.py:Name or module:name
    inputs = ["x:batch=2x3x64x64"]
    compare = { logits = "cosine:min=0.9999" }

    [[model]]
    ref = "tiny_bert:make"
    inputs = ["input_ids:batch=2xseq=16:int64[0,1000)", "attention_mask:batch=2xseq=16:int64{0,1}"]
    cases = ["batch=1,seq=128"]
    data = "data/bert"                  # a .npz file or a folder of them
    ignore_outputs = ["pooler_output"]
    atol = 1e-4
    exporters = ["torchscript"]         # this model's own exporters

Paths (a ``file.py`` reference, ``data``, ``artifacts``) are relative to the manifest's
folder, so the manifest works from any folder. Every key is checked: an unknown one is
an error naming the keys that exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomllib

from nnkit.errors import NnkitError
from nnkit.matrix.plan import ModelSpec, ParityRequest
from nnkit.spec import parse_sizes, parse_spec


class ConfigError(NnkitError):
    """A manifest that cannot be read or does not describe a run (exit status 2)."""


#: ``[parity]`` keys, and the type each takes.
RUN_KEYS: dict[str, type | tuple[type, ...]] = {
    "backends": list,
    "exporters": list,
    "strict": bool,
    "timeout": (int, float),
    "artifacts": str,
    "onnx": str,
    "trust_metadata": bool,
    "variants": list,
    "budget": list,
}
#: ``[[model]]`` keys, and the type each takes.
MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "ref": str,
    "inputs": list,
    "cases": list,
    "data": str,
    "generated_cases": bool,
    "ignore_outputs": list,
    "atol": (int, float),
    "rtol": (int, float),
    "compare": dict,
    "exporters": list,
}


def load_config(path: str | Path, *, only: Sequence[str] = (), **overrides: Any) -> ParityRequest:
    """Read the manifest at ``path`` into a :class:`ParityRequest`.

    Args:
        path: the TOML manifest.
        only: run these models of the manifest (by ``ref``); all when empty.
        overrides: request-level settings from the command line (``backends``,
            ``exporters``, ``strict``, ``timeout``, ``artifacts``...); None leaves the
            manifest's.

    Raises:
        ConfigError: a file that cannot be read, is not TOML, has an unknown key or a
            value of the wrong type, names no model, or a model ``only`` asks for that
            it does not have.
        SpecError: an input spec or a case that cannot be parsed.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {str(p)!r}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
    unknown = sorted(set(data) - {"parity", "model"})
    if unknown:
        raise ConfigError(
            f"{p}: unknown table {unknown[0]!r}; a manifest has [parity] and [[model]] tables"
        )
    folder = p.resolve().parent
    run = _checked(data.get("parity", {}), RUN_KEYS, where=f"{p} [parity]")
    tables = data.get("model", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{p} names no model: add a [[model]] table with a ref")
    models = [_model(t, folder, where=f"{p} [[model]] #{i + 1}") for i, t in enumerate(tables)]
    refs = [m.name for m in models]
    if len(set(refs)) != len(refs):
        raise ConfigError(f"{p} names a model twice: {', '.join(refs)}")
    if only:
        missing = [r for r in only if r not in refs]
        if missing:
            raise ConfigError(f"{p} has no model {missing[0]!r}; its models are {', '.join(refs)}")
        models = [m for m in models if m.name in only]
    settings: dict[str, Any] = {
        "backends": run.get("backends"),
        "exporters": run.get("exporters"),
        "strict": run.get("strict", False),
        "timeout": run.get("timeout", ParityRequest.timeout),
        "artifacts": _path(run["artifacts"], folder) if "artifacts" in run else None,
        "onnx": _path(run["onnx"], folder) if "onnx" in run else None,
        "trust_metadata": run.get("trust_metadata", False),
        "variants": run.get("variants"),
        "budgets": [_budget(t, where=f"{p} [parity]") for t in run.get("budget", [])],
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return ParityRequest(models=models, config=p, **settings)


def _budget(text: Any, *, where: str) -> tuple[str, dict[str, float]]:
    """One ``budget`` entry, ``VARIANT:metric=value[,...]``, parsed."""
    from nnkit.compare.budget import parse_budget

    if not isinstance(text, str):
        raise ConfigError(
            f"{where}: budget entries are text like 'fp16:cosine=0.999', got {text!r}"
        )
    try:
        return parse_budget(text)
    except NnkitError as e:
        raise ConfigError(f"{where}: {e.message}") from None


def _checked(
    table: Any, keys: Mapping[str, type | tuple[type, ...]], *, where: str
) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} is not a table")
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys are {', '.join(keys)}")
        want = keys[key]
        if isinstance(value, bool) and want in ((int, float), int, float):
            raise ConfigError(f"{where}: {key} must be a number, not {value!r}")
        if not isinstance(value, want):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise ConfigError(f"{where}: {key} must be a {names}, not {value!r}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings, not {value!r}")
    return table


def _model(table: Any, folder: Path, *, where: str) -> ModelSpec:
    t = _checked(table, MODEL_KEYS, where=where)
    if "ref" not in t:
        raise ConfigError(f"{where} has no ref (a zoo name, file.py:Name or module:name)")
    compare = t.get("compare", {})
    bad = [k for k, v in compare.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(f"{where}: compare.{bad[0]} must be a rule as text, e.g. 'cosine'")
    return ModelSpec(
        ref=_ref(t["ref"], folder),
        name=t["ref"],
        inputs=tuple(parse_spec(s) for s in t.get("inputs", [])),
        cases=tuple(parse_sizes(c) for c in t.get("cases", [])),
        data=_path(t["data"], folder) if "data" in t else None,
        generated_cases=t.get("generated_cases", True),
        ignore_outputs=tuple(t.get("ignore_outputs", [])),
        atol=t.get("atol"),
        rtol=t.get("rtol"),
        compare=dict(compare),
        exporters=tuple(t["exporters"]) if "exporters" in t else None,
    )


def _ref(ref: str, folder: Path) -> str:
    """A ``file.py:Name`` reference made relative to the manifest; others as they are."""
    where, sep, name = ref.rpartition(":")
    if sep and (where.endswith(".py") or "/" in where) and not Path(where).is_absolute():
        return f"{_path(where, folder)}:{name}"
    return ref


def _path(text: str, folder: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else folder / path
