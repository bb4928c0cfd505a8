"""ONNX file I/O and graph edits: everything in nnkit that reads or changes a model goes here.

- Reading a file (:mod:`~nnkit.onnxfile.load`): :func:`load_model_file` (one clear line
  for a file that cannot be read), :func:`preflight` (the pre-check every runtime's file
  passes first), :func:`read_io`.
- Its external data (:mod:`~nnkit.onnxfile.external`): checked from the file system's
  metadata before any of it is read.
- Reading a loaded model (:mod:`~nnkit.onnxfile.graph`): the (sub)graph walk, the
  declared inputs and outputs (:func:`io_of`, :func:`value_info`), metadata and the input
  specs nnkit stamps into its exports.
- Graph edits (:mod:`~nnkit.onnxfile.edits`): strip shape hints or stack traces, set
  metadata, add outputs, extract a subgraph.

Only onnx is imported, and only inside the functions that need it: importing this
package costs nothing (``nnkit check`` and every backend call it).
"""

from __future__ import annotations

from nnkit.onnxfile.edits import (
    STACK_TRACE_KEY,
    GraphEditError,
    add_outputs,
    expose,
    extract_subgraph,
    set_metadata,
    strip_stack_traces,
    strip_value_info,
)
from nnkit.onnxfile.external import (
    external_data_problems,
    require_sound_external_data,
    tensor_nbytes,
)
from nnkit.onnxfile.graph import (
    graph_inputs,
    graphs,
    io_of,
    metadata,
    onnx_dtype_name,
    stamped_specs,
    value_info,
)
from nnkit.onnxfile.load import load_model_file, preflight, read_io

__all__ = [
    "STACK_TRACE_KEY",
    "GraphEditError",
    "add_outputs",
    "expose",
    "external_data_problems",
    "extract_subgraph",
    "graph_inputs",
    "graphs",
    "io_of",
    "load_model_file",
    "metadata",
    "onnx_dtype_name",
    "preflight",
    "read_io",
    "require_sound_external_data",
    "set_metadata",
    "stamped_specs",
    "strip_stack_traces",
    "strip_value_info",
    "tensor_nbytes",
    "value_info",
]
