"""What localizing a divergence costs, beside running the cell it localizes.

For each model: export it, change one middle layer's weight in the file (a planted
export fault), then run ``parity --onnx BAD --backends cpu --localize`` through the
library and print, per model: its modules, the cell's own seconds (loading the file on
the backend and running every shape case), the whole parity run without localizing,
the localization's seconds (PyTorch with hooks, the exposed run, the blame runs on every
CPU backend, the repro), and the ratios.

Models: the zoo's CombinedNN, and a ResNet-101-like network built here (torchvision
does not import beside the CPU torch on this machine): bottleneck blocks [3, 4, 23, 3],
batch norm, 300+ modules, on 2x3x64x64 images.

    .venv/bin/python scripts/localize_cost.py [--exporter dynamo|torchscript]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class ResNetLike(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (3, 4, 23, 3), classes: int = 100) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin, stages = 64, []
        for i, blocks in enumerate(layers):
            width = 64 * 2**i
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(cin, width, 2 if (b == 0 and i > 0) else 1))
                cin = width * 4
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():  # non-trivial batch-norm statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet101_like() -> nn.Module:
    return ResNetLike()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"])
    args = parser.parse_args()
    import onnx
    from onnx import numpy_helper

    from nnkit.parity import run_parity

    here = Path(__file__).resolve()
    models = [
        ("combinednn", "combinednn", (), "fc2.weight", _modules("combinednn")),
        (
            "ResNet-101-like",
            f"{here}:resnet101_like",
            ("x:batch=2x3x64x64",),
            "layer3.11.conv2.weight",
            len(list(ResNetLike().modules())),
        ),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, ref, inputs, weight, modules in models:
            src, bad = Path(tmp) / f"{label}.onnx", Path(tmp) / f"{label}.bad.onnx"
            spec = [a for i in inputs for a in ("--input", i)]
            subprocess.run(
                [sys.executable, "-m", "nnkit", "export", ref, *spec, "--exporter",
                 args.exporter, "-o", str(src)],
                check=True, capture_output=True, timeout=900,
            )  # fmt: skip
            model = onnx.load(str(src))
            names = [t.name for t in model.graph.initializer]
            # a fused conv+bn keeps the conv's weight under another name: the largest
            # initializer read by the node that reads the layer's weight, else the weight
            target = weight if weight in names else _fused(model, weight)
            for t in model.graph.initializer:
                if t.name == target:
                    array = numpy_helper.to_array(t) * 1.1
                    t.CopyFrom(numpy_helper.from_array(array.astype("float32"), t.name))
            onnx.save(model, str(bad))
            options = {"onnx": bad, "backends": ["cpu"], "inputs": _specs(inputs)}
            start = time.perf_counter()
            plain = run_parity([ref], **options)
            parity_seconds = time.perf_counter() - start
            report = run_parity([ref], localize=True, **options)
            cell = report.cells()[0]
            found = cell.localization
            assert found is not None and found.found, found
            rows.append(
                [
                    label,
                    str(modules),
                    f"{found.module} ({found.module_type}), blame {found.blame}",
                    f"{plain.cells()[0].seconds:.2f}",
                    f"{parity_seconds:.2f}",
                    f"{found.seconds:.2f}",
                    f"{found.seconds / plain.cells()[0].seconds:.1f}x",
                    f"{found.seconds / parity_seconds:.2f}x",
                ]
            )
    from nnkit.render import table

    print(f"exporter: {args.exporter}; backend under test: cpu; blame on every CPU backend here")
    print(
        table(
            ["model", "modules", "first divergence", "cell s", "parity s", "localize s",
             "vs cell", "vs parity"],
            rows,
        )
    )  # fmt: skip


def _fused(model: object, weight: str) -> str:
    """The initializer an export folded ``weight`` (a conv before a batch norm) into: the
    weight input of the Conv node in the batch norm's scope (dynamo) or named after the
    conv (torchscript: ``/layer3/layer3.11/conv2/Conv``)."""
    import onnx

    assert isinstance(model, onnx.ModelProto)
    layer, conv, _ = weight.rsplit(".", 2)  # layer3.11.conv2.weight
    scope = f"{layer}.bn{conv[-1]}"
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key.endswith("name_scopes")), "")
        named = node.name.endswith(f"/{layer}/{conv}/Conv")
        if node.op_type == "Conv" and (f"'{scope}'" in scopes or named):
            return node.input[1]
    raise SystemExit(f"no Conv for {weight!r} in the file")


def _modules(zoo_name: str) -> int:
    from nnkit.resolve import resolve_model

    return len(list(resolve_model(zoo_name).module.modules()))


def _specs(inputs: tuple[str, ...]) -> list:
    from nnkit.spec import parse_spec

    return [parse_spec(i) for i in inputs]


if __name__ == "__main__":
    main()
