"""The record of what a run ran on (nnkit.environment), shared by every report."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from nnkit import __version__
from nnkit.backends import probe
from nnkit.environment import PACKAGES, environment, package_versions


def test_the_record_has_versions_backends_and_machine():
    env = environment(["cpu", "reference"])
    assert list(env) == ["versions", "backends", "machine"]
    # parity's report has carried these keys since its first version: they stay.
    assert {"nnkit", "python", "numpy", "onnx", "torch", "onnxscript"} <= set(env["versions"])
    assert set(env["versions"]) == {"nnkit", "python", *PACKAGES}
    assert env["versions"]["nnkit"] == __version__
    assert env["versions"]["numpy"] == np.__version__  # imported: the module's own version
    assert env["backends"] == {"cpu": probe("cpu").version, "reference": probe("reference").version}
    assert set(env["machine"]) == {"platform", "architecture", "cpu", "cores"}
    assert env["machine"]["cores"] >= 1


def test_an_absent_package_is_none_and_its_distribution_too():
    versions = package_versions()
    assert set(versions) == set(PACKAGES)
    assert versions["onnxruntime"]["distribution"] in PACKAGES["onnxruntime"]
    for pkg in versions.values():
        assert (pkg["distribution"] is None) == (pkg["version"] is None)


def test_reading_versions_imports_no_torch():
    code = (
        "import sys; from nnkit.environment import environment; "
        "env = environment(['cpu']); print('torch' in sys.modules, env['versions']['torch'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    imported, version = done.stdout.split()
    assert imported == "False" and version != "None"  # the installed torch, not imported
