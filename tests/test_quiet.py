"""Native console noise is captured at the file-descriptor level."""

from __future__ import annotations

import os
import sys
import warnings

from nnkit.quiet import captured


def test_captures_native_writes_python_prints_and_warnings(capfd):
    with captured() as log:
        os.write(1, b"from native stdout\n")
        os.write(2, b"from native stderr\n")
        print("from print")
        print("from sys.stderr", file=sys.stderr)
        warnings.warn("a warning", UserWarning, stacklevel=1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    for text in ("native stdout", "native stderr", "from print", "from sys.stderr", "a warning"):
        assert text in log.text


def test_disabled_lets_everything_through(capfd):
    with captured(enabled=False):
        os.write(1, b"visible\n")
    assert "visible" in capfd.readouterr().out
