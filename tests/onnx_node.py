"""ONNX's backend node test cases, run two ways: each runtime directly, and ``nnkit infer``.

A case is a folder holding ``model.onnx`` and ``test_data_set_0/input_K.pb``,
``output_K.pb`` (``TensorProto``, ``SequenceProto`` or ``OptionalProto``, in the order of
the graph's inputs and outputs). For one case and one backend:

* **direct**: the runtime's own Python API on the values ``onnx.numpy_helper`` reads,
  the way a user would call it (onnxruntime ``session.run``, OpenVINO
  ``compile_model(...)(feeds)``, tract ``run``, ``ReferenceEvaluator.run``);
* **nnkit**: ``nnkit infer MODEL --provider BACKEND --input inputs.npz --save out.npz``
  through the click CLI, the inputs written as a user writes them with numpy (the
  layout nnkit documents: low-precision tensors as their raw bits, strings as ``<U``,
  a sequence ``s`` as ``s.0``, ``s.1``, ..., an empty optional as no key), the outputs
  read back from ``--save`` with nnkit's own ``--input`` reader.

Both answers are judged against the case's expected outputs (:func:`same`). The
script ``scripts/onnx_conformance.py`` runs every case of a folder this way and
prints the counts; ``tests/test_onnx_conformance.py`` runs the vendored sample.
Each run happens in a worker process (:func:`worker_main`), since a runtime can abort
the process it runs in.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The CPU backends the conformance runs cover.
BACKENDS = ("cpu", "openvino", "tract", "reference")
#: Tolerances of ONNX's own backend test runner (``onnx.backend.test.runner``).
RTOL, ATOL = 1e-3, 1e-7
#: Seconds one run (direct and nnkit) may take before its worker is killed.
RUN_TIMEOUT = 120.0


# -- reading a case --------------------------------------------------------------------


#: Operators whose outputs are random: only the outputs' dtypes and shapes are judged.
RANDOM_OPS = frozenset(
    {
        "Bernoulli",
        "Multinomial",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
    }
)


@dataclass
class Case:
    """One test case: the model file, its inputs by name, and the expected outputs."""

    name: str
    model: Path
    inputs: dict[str, Any]
    expected: dict[str, Any]
    #: The model draws random numbers (Bernoulli ...): its values cannot be judged.
    random: bool = False


def read_value(path: Path, type_proto: Any) -> Any:
    """A ``.pb`` file as a value: an array, a list of arrays, or None (an empty optional)."""
    import onnx
    from onnx import numpy_helper

    data = path.read_bytes()
    kind = type_proto.WhichOneof("value")
    if kind == "sequence_type":
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        return numpy_helper.to_list(seq)
    if kind == "optional_type":
        opt = onnx.OptionalProto()
        opt.ParseFromString(data)
        return numpy_helper.to_optional(opt)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)


def load_case(folder: Path) -> Case:
    """Read the case in ``folder``. An input without its ``.pb`` file is left out."""
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    data = folder / "test_data_set_0"
    inputs: dict[str, Any] = {}
    for index, value in enumerate(v for v in model.graph.input if v.name not in inits):
        pb = data / f"input_{index}.pb"
        if pb.is_file():
            inputs[value.name] = read_value(pb, value.type)
    expected = {
        value.name: read_value(data / f"output_{index}.pb", value.type)
        for index, value in enumerate(model.graph.output)
    }
    ops = {n.op_type for n in model.graph.node}
    # Dropout draws only in training mode, with a ratio above 0.
    training = "Dropout" in ops and "training" in folder.name and "zero_ratio" not in folder.name
    random = bool(ops & RANDOM_OPS) or training
    return Case(folder.name, folder / "model.onnx", inputs, expected, random)


def case_folders(root: Path) -> list[Path]:
    """The case folders under ``root``, sorted by name."""
    return sorted(p.parent for p in root.glob("*/model.onnx"))


# -- judging ---------------------------------------------------------------------------


def _is_string(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "USO"


def _strings(arr: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel().tolist()]


def same(expected: Any, got: Any, *, where: str = "", values: bool = True) -> str | None:
    """None when ``got`` is ``expected``, else why not (one line).

    Arrays: the same dtype (strings of any numpy kind count as one dtype), the same
    shape, strings equal, numbers within ONNX's own test tolerances (NaN where NaN).
    Sequences element by element; an empty optional is None. ``values=False`` judges
    dtypes and shapes only (for random outputs).
    """
    if expected is None or got is None:
        return (
            None
            if expected is None and got is None
            else f"{where}: {got!r:.60} != {expected!r:.60}"
        )
    if isinstance(expected, list):
        if not isinstance(got, list):
            return f"{where}: a {type(got).__name__}, expected a sequence"
        if len(got) != len(expected):
            return f"{where}: {len(got)} elements, expected {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            why = same(e, g, where=f"{where}[{i}]", values=values)
            if why:
                return why
        return None
    if isinstance(got, list) or not isinstance(got, np.ndarray | np.generic):
        return f"{where}: a {type(got).__name__}, expected an array"
    exp, out = np.asarray(expected), np.asarray(got)
    if _is_string(exp) or _is_string(out):
        if not (_is_string(exp) and _is_string(out)):
            return f"{where}: dtype {out.dtype}, expected strings"
        if exp.shape != out.shape:
            return f"{where}: shape {out.shape}, expected {exp.shape}"
        if not values:
            return None
        return None if _strings(exp) == _strings(out) else f"{where}: strings differ"
    if str(exp.dtype) != str(out.dtype):
        return f"{where}: dtype {out.dtype}, expected {exp.dtype}"
    if exp.shape != out.shape:
        return f"{where}: shape {out.shape}, expected {exp.shape}"
    if not values:
        return None
    if exp.dtype.kind in "biu":
        return None if np.array_equal(exp, out) else f"{where}: values differ"
    e, o = exp.astype(np.float64), out.astype(np.float64)
    close = np.isclose(o, e, rtol=RTOL, atol=ATOL, equal_nan=True)
    return None if bool(close.all()) else f"{where}: {int((~close).sum())} values differ"


def same_outputs(
    expected: dict[str, Any], got: list[Any] | dict[str, Any], *, values: bool = True
) -> str | None:
    """:func:`same` over every output (by position for a list, by name for a dict)."""
    values = list(got.values()) if isinstance(got, dict) else list(got)
    if len(values) != len(expected):
        return f"{len(values)} outputs, expected {len(expected)}"
    for (name, exp), value in zip(expected.items(), values, strict=True):
        why = same(exp, value, where=name, values=values)
        if why:
            return why
    return None


# -- the runtime, called directly ------------------------------------------------------


def run_direct(backend: str, case: Case) -> list[Any]:
    """Run ``case`` on ``backend``'s runtime through its own Python API; outputs in order.

    Raises whatever the runtime raises when it refuses.
    """
    names = list(case.expected)
    if backend == "cpu":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(
            str(case.model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feeds = {k: v for k, v in case.inputs.items() if v is not None}
        return list(session.run(names, feeds))
    if backend == "reference":
        from onnx.reference import ReferenceEvaluator

        return list(ReferenceEvaluator(str(case.model)).run(names, dict(case.inputs)))
    if backend == "openvino":
        import openvino as ov

        # In fp32, as nnkit compiles (OpenVINO would compute in bf16 on CPUs with AMX or
        # avx512_bf16, and differ from the expected outputs for that reason alone).
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(str(case.model), "CPU", config)
        # Writeable copies: OpenVINO refuses the read-only arrays numpy_helper gives.
        result = compiled({k: _copied(v) for k, v in case.inputs.items()})
        return [np.array(result[port]) for port in compiled.outputs]
    if backend == "tract":
        import onnx
        import tract

        model = onnx.load(str(case.model), load_external_data=False)
        inits = {t.name for t in model.graph.initializer}
        order = [v.name for v in model.graph.input if v.name not in inits]
        runnable = tract.onnx().load(str(case.model)).into_model().into_runnable()
        return [t.to_numpy() for t in runnable.run([case.inputs[n] for n in order])]
    raise ValueError(f"unknown backend {backend!r}")


def _copied(value: Any) -> Any:
    if isinstance(value, list):
        return [np.array(v) for v in value]
    return None if value is None else np.array(value)


# -- nnkit, through its command line -----------------------------------------------------


def low_precision(dtype: np.dtype) -> bool:
    """A dtype numpy lacks, which ``ml_dtypes`` provides (bfloat16, float8, int4 ...)."""
    return dtype.type.__module__.split(".")[0] == "ml_dtypes"


def feed_array(arr: np.ndarray) -> np.ndarray:
    """An input array as a user writes it with numpy: strings as ``<U``, the dtypes numpy
    lacks (bfloat16, float8, int4 ...) as unsigned ints holding their bits, one value a
    byte for the 4- and 2-bit ones (``np.savez`` cannot write float8_e5m2 as it is)."""
    if arr.dtype.kind == "O":
        return np.array(_strings(arr), dtype=str).reshape(arr.shape)
    if low_precision(arr.dtype):
        return arr.view(np.uint16 if arr.dtype.itemsize == 2 else np.uint8)
    return arr


def same_bits(nnkit_value: Any, direct_value: Any) -> bool:
    """True when nnkit's low-precision array holds exactly the bits a runtime gave raw
    (OpenVINO gives float8 as uint8, bfloat16 as float16 bits, int4 packed)."""
    if not (isinstance(nnkit_value, np.ndarray) and isinstance(direct_value, np.ndarray)):
        return False
    if not low_precision(nnkit_value.dtype):
        return False
    raw = np.ascontiguousarray(direct_value).view(np.uint8).ravel()
    if raw.size == nnkit_value.nbytes:
        return np.array_equal(np.ascontiguousarray(nnkit_value).view(np.uint8).ravel(), raw)
    from nnkit.values import pack_bits  # packed 4- or 2-bit values

    return np.array_equal(pack_bits(nnkit_value), raw)


def write_feeds(inputs: dict[str, Any], path: Path) -> None:
    """Write a case's inputs in the layout ``nnkit infer --input`` documents."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        if value is None:  # an empty optional: no key
            continue
        if isinstance(value, list):
            for index, element in enumerate(value):
                arrays[f"{name}.{index}"] = feed_array(element)
            if not value:
                arrays[f"{name}.len"] = np.array(0)
            continue
        arrays[name] = feed_array(value)
    with path.open("wb") as f:
        np.savez(f, **arrays)


def read_saved(path: Path, model: Path) -> dict[str, Any]:
    """Read what ``--save`` wrote back the way ``--input`` reads a file, by output name."""
    import nnkit
    from nnkit.inputs import load_feeds

    raw = load_feeds([(None, path)])
    if not (Path(nnkit.__file__).parent / "values.py").is_file():
        return dict(raw)  # an nnkit before value kinds (the baseline): the arrays as they are
    from nnkit.onnxfile import read_io
    from nnkit.values import bind_values

    return bind_values(read_io(model)[1], raw, what="output")


@dataclass
class NnkitRun:
    """What ``nnkit infer`` did: exit code, stderr (native writes included), outputs."""

    exit_code: int
    stderr: str
    outputs: dict[str, Any] | None = None
    save_error: str = ""

    @property
    def clean_refusal(self) -> bool:
        """Exit 2 with one line on stderr that is an error of nnkit's, not a crash of it."""
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return (
            self.exit_code == 2
            and len(lines) == 1
            and "internal error" not in self.stderr
            and "Traceback" not in self.stderr
        )


@contextlib.contextmanager
def _fd2_captured() -> Iterator[Path]:
    """Send file descriptor 2 (native runtimes' logs) to a file while the block runs."""
    with tempfile.NamedTemporaryFile(prefix="nnkit-fd2-", delete=False) as sink:
        path = Path(sink.name)
    saved = os.dup(2)
    with path.open("wb") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield path
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run_nnkit(backend: str, case: Case, workdir: Path) -> NnkitRun:
    """``nnkit infer`` on ``case`` with its inputs as a file, and its ``--save`` read back."""
    from click.testing import CliRunner

    from nnkit.cli import cli

    feeds, saved = workdir / "inputs.npz", workdir / "outputs.npz"
    saved.unlink(missing_ok=True)
    args = ["infer", str(case.model), "--provider", backend, "--save", str(saved)]
    if case.inputs:
        write_feeds(case.inputs, feeds)
        args += ["--input", str(feeds)]
    with _fd2_captured() as fd2:
        result = CliRunner().invoke(cli, args)
    native = fd2.read_text(errors="replace")
    fd2.unlink()
    stderr = native + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += f"\nTraceback: {type(result.exception).__name__}: {result.exception}"
    run = NnkitRun(result.exit_code, stderr)
    if result.exit_code == 0:
        try:
            run.outputs = read_saved(saved, case.model)
        except Exception as e:
            run.save_error = f"--save file unreadable: {type(e).__name__}: {e}"
    return run


# -- one run, judged ----------------------------------------------------------------------


@dataclass
class RunRecord:
    """One case on one backend: how the runtime did directly, and how nnkit did."""

    case: str
    backend: str
    #: ``right``, ``wrong``, ``refuses``, ``crash`` (it killed its process) or ``timeout``.
    direct: str = ""
    direct_why: str = ""
    #: ``right``, ``wrong``, ``refuses`` (one line, exit 2), ``unclean`` (a traceback, an
    #: internal error, more than one line, another exit code), ``crash`` or ``timeout``.
    nnkit: str = ""
    nnkit_why: str = ""
    #: True when nnkit's outputs are exactly the runtime's direct ones.
    nnkit_same_as_direct: bool = False
    #: nnkit exited 0 but its --save file could not be read back.
    damaged_save: bool = False
    #: The runtime is wrong, and differently so run to run (uninitialised memory): nnkit's
    #: answer is then judged on its dtypes and shapes only.
    unstable: bool = False
    seconds: float = 0.0

    @property
    def defect(self) -> str:
        """Why this run is a defect of nnkit's, or ``""``."""
        if self.nnkit in ("unclean", "crash", "timeout"):
            if self.direct in ("crash", "timeout"):
                return ""  # the runtime kills or hangs its process either way
            return f"nnkit {self.nnkit}: {self.nnkit_why}"
        if self.direct == "right" and self.nnkit != "right":
            return f"the runtime is right, nnkit {self.nnkit}: {self.nnkit_why}"
        if self.nnkit == "wrong" and not self.nnkit_same_as_direct:
            return f"nnkit wrong where the runtime is not right: {self.nnkit_why}"
        return ""


def judge(backend: str, case: Case, workdir: Path, phase: Any = None) -> RunRecord:
    """Run ``case`` on ``backend`` both ways and judge both answers."""
    record = RunRecord(case.name, backend)
    start = time.perf_counter()
    if phase:
        phase("direct")
    direct: list[Any] | None = None
    try:
        direct = run_direct(backend, case)
    except BaseException as e:  # a runtime raises anything, SystemExit aside
        if isinstance(e, KeyboardInterrupt):
            raise
        record.direct, record.direct_why = "refuses", _one_line(e)
    if direct is not None:
        why = same_outputs(case.expected, direct, values=not case.random)
        record.direct, record.direct_why = ("wrong", why) if why else ("right", "")
        if why:  # wrong: the same wrong answer again, or one that changes run to run?
            with contextlib.suppress(Exception):
                record.unstable = not _same_as_direct(direct, run_direct(backend, case))
    if phase:
        phase("nnkit", record.direct)
    run = run_nnkit(backend, case, workdir)
    if run.exit_code == 0 and run.save_error:
        record.nnkit, record.nnkit_why, record.damaged_save = "wrong", run.save_error, True
    elif run.exit_code == 0 and run.outputs is not None:
        why = same_outputs(case.expected, _ordered(run.outputs, case), values=not case.random)
        record.nnkit, record.nnkit_why = ("wrong", why) if why else ("right", "")
        record.nnkit_same_as_direct = direct is not None and _same_as_direct(
            direct, _ordered(run.outputs, case), values=not (case.random or record.unstable)
        )
    elif run.clean_refusal:
        record.nnkit, record.nnkit_why = "refuses", run.stderr.strip()
    else:
        record.nnkit = "unclean"
        record.nnkit_why = (
            f"exit {run.exit_code}: {' | '.join(run.stderr.strip().splitlines()[:3])}"
        )
    record.seconds = time.perf_counter() - start
    return record


def _same_as_direct(direct: list[Any], got: list[Any], *, values: bool = True) -> bool:
    """nnkit's outputs are the runtime's own, value for value (raw bits read as typed)."""
    if len(direct) != len(got):
        return False
    return all(
        same(d, g, values=values) is None or same_bits(g, d)
        for d, g in zip(direct, got, strict=True)
    )


def _ordered(outputs: dict[str, Any], case: Case) -> list[Any]:
    return [outputs.get(name, "<missing>") for name in case.expected]


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


# -- workers: runtimes abort their process, so each run happens in one -----------------------


def worker_main() -> None:
    """Serve jobs from stdin (``{"folder", "backend"}`` lines); answer on stdout.

    Before each phase it writes ``{"phase": ...}``, so the parent knows which side
    killed the process if it dies.
    """
    import warnings

    warnings.simplefilter("ignore")
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # runtimes' prints stay out of the protocol
    cases: dict[str, Case] = {}
    with tempfile.TemporaryDirectory(prefix="nnkit-conformance-") as tmp:
        for line in sys.stdin:
            job = json.loads(line)
            folder = Path(job["folder"])
            key = str(folder)
            if key not in cases:
                cases.clear()
                cases[key] = load_case(folder)

            def phase(name: str, direct: str = "") -> None:
                out.write(json.dumps({"phase": name, "direct": direct}) + "\n")

            record = judge(job["backend"], cases[key], Path(tmp), phase)
            out.write(json.dumps({"record": asdict(record)}) + "\n")


@dataclass
class _Worker:
    proc: subprocess.Popen
    job: tuple[Path, str] | None = None
    phase: str = ""
    direct: str = ""
    started: float = 0.0
    buffer: bytes = b""
    done: int = 0


@dataclass
class Progress:
    """Counts while a run goes, for a progress line."""

    done: int = 0
    total: int = 0
    records: list[RunRecord] = field(default_factory=list)


def run_all(
    folders: Iterable[Path],
    backends: Iterable[str] = BACKENDS,
    *,
    jobs: int = 1,
    timeout: float = RUN_TIMEOUT,
    on_record: Any = None,
) -> list[RunRecord]:
    """Judge every case in ``folders`` on every backend, in ``jobs`` worker processes."""
    queue = [(f, b) for f in folders for b in backends]
    queue.reverse()
    records: list[RunRecord] = []
    workers: list[_Worker] = []
    command = [sys.executable, "-c", "import tests.onnx_node as m; m.worker_main()"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    root = Path(__file__).resolve().parent.parent

    def spawn() -> _Worker:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=root,
            env=env,
        )
        return _Worker(proc)

    def finish(worker: _Worker, record: RunRecord) -> None:
        worker.job = None
        worker.done += 1
        records.append(record)
        if on_record:
            on_record(record)

    def lost(worker: _Worker, why: str) -> None:
        assert worker.job is not None
        folder, backend = worker.job
        record = RunRecord(folder.name, backend)
        if worker.phase == "nnkit":
            record.direct = worker.direct
            record.nnkit, record.nnkit_why = why, f"the process {why}ed during nnkit infer"
        else:
            record.direct, record.direct_why = why, f"the runtime {why}ed its process"
            record.nnkit = "skipped"
        with contextlib.suppress(Exception):
            worker.proc.kill()
        worker.proc.wait()
        finish(worker, record)

    try:
        while queue or any(w.job for w in workers):
            while len(workers) < jobs and queue:
                workers.append(spawn())
            for worker in list(workers):
                if worker.job is None and queue:
                    if worker.done >= 150 or worker.proc.poll() is not None:  # fresh memory
                        with contextlib.suppress(Exception):
                            worker.proc.stdin.close()
                            worker.proc.wait(timeout=10)
                        workers[workers.index(worker)] = worker = spawn()
                    worker.job = queue.pop()
                    worker.phase, worker.started, worker.buffer = "", time.monotonic(), b""
                    line = json.dumps({"folder": str(worker.job[0]), "backend": worker.job[1]})
                    worker.proc.stdin.write(line.encode() + b"\n")
                    worker.proc.stdin.flush()
            busy = [w for w in workers if w.job]
            ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], 1.0)
            for worker in busy:
                if worker.proc.stdout in ready:
                    chunk = os.read(worker.proc.stdout.fileno(), 1 << 16)
                    if not chunk:
                        lost(worker, "crash")
                        workers.remove(worker)
                        continue
                    worker.buffer += chunk
                    while b"\n" in worker.buffer and worker.job:
                        line, worker.buffer = worker.buffer.split(b"\n", 1)
                        message = json.loads(line)
                        if "phase" in message:
                            worker.phase, worker.direct = message["phase"], message["direct"]
                        else:
                            finish(worker, RunRecord(**message["record"]))
                elif time.monotonic() - worker.started > timeout:
                    lost(worker, "timeout")
                    workers.remove(worker)
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.proc.kill()
                worker.proc.wait()
    return records


# -- the counts table ----------------------------------------------------------------------

#: (row label, test on a record), in the order of the table.
ROWS: tuple[tuple[str, Any], ...] = (
    ("runs", lambda r: True),
    ("runtime right", lambda r: r.direct == "right"),
    ("runtime wrong", lambda r: r.direct == "wrong"),
    ("  of which different run to run", lambda r: r.unstable),
    ("runtime refuses", lambda r: r.direct == "refuses"),
    ("runtime crashes or hangs", lambda r: r.direct in ("crash", "timeout")),
    ("nnkit right", lambda r: r.nnkit == "right"),
    ("  where the runtime is right", lambda r: r.nnkit == "right" and r.direct == "right"),
    ("  where the runtime is not", lambda r: r.nnkit == "right" and r.direct != "right"),
    (
        "nnkit gives the runtime's own wrong answer",
        lambda r: r.nnkit == "wrong" and r.nnkit_same_as_direct,
    ),
    (
        "nnkit refuses in one line, runtime not right",
        lambda r: r.nnkit == "refuses" and r.direct != "right",
    ),
    ("DEFECT runtime right, nnkit refuses", lambda r: r.direct == "right" and r.nnkit == "refuses"),
    (
        "DEFECT nnkit wrong (not the runtime's answer)",
        lambda r: r.nnkit == "wrong" and not r.nnkit_same_as_direct,
    ),
    ("  of which exit 0 with a damaged --save", lambda r: r.damaged_save),
    (
        "DEFECT nnkit unclean (traceback, >1 line, crash)",
        lambda r: bool(r.defect) and r.nnkit in ("unclean", "crash", "timeout"),
    ),
    ("defects (any)", lambda r: bool(r.defect)),
)


def counts_table(records: list[RunRecord], backends: Iterable[str] = BACKENDS) -> str:
    """The counts, one row per outcome and one column per backend, as Markdown."""
    backends = list(backends)
    head = "| outcome | " + " | ".join(backends) + " | all |"
    lines = [head, "|---|" + "---:|" * (len(backends) + 1)]
    for label, test in ROWS:
        cells = [sum(1 for r in records if r.backend == b and test(r)) for b in backends]
        lines.append(f"| {label} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
    return "\n".join(lines)
