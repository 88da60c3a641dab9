#!/usr/bin/env python3
"""Exports torchvision models to ONNX with both of torch's exporters and prints PyTorch's
forward-hook MAC count, for cross-checking `cargo xtask analyze path/to/model.onnx`.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch torchvision onnx onnxscript
    /tmp/venv/bin/python scripts/export-onnx.py OUT_DIR resnet18 mobilenet_v2 resnext50_32x4d ...

For each model and exporter it writes OUT_DIR/<model>-<dynamo|torchscript>.onnx with the weights
in OUT_DIR/<model>-<exporter>.onnx.data (external data; tensors under --inline-bytes (1 KiB) stay in the graph, so
integer shape constants are inline), and a line of JSON per export on stdout:
{"model", "exporter", "file", "macs", "params", "input"}. `--graph-only` drops the .data file
(kiln's analyzer never reads weights, so the graph alone analyzes), which is how the small test
files under crates/kiln-analyze/tests/data were made.

MACs: forward hooks on Conv*/ConvTranspose*/Linear/MultiheadAttention-free models: conv
output elements x in_channels/groups x kernel area; transposed conv input elements x
out_channels/groups x kernel area; linear output elements x in_features (kiln's convention).
"""
import argparse
import json
import os
import sys

import onnx
import torch
import torchvision


def hook_macs(model, x):
    total = [0]

    def conv(m, inp, out):
        k = 1
        for v in m.kernel_size:
            k *= v
        if isinstance(m, torch.nn.modules.conv._ConvTransposeNd):
            total[0] += inp[0].numel() * (m.out_channels // m.groups) * k
        else:
            total[0] += out.numel() * (m.in_channels // m.groups) * k

    def linear(m, inp, out):
        total[0] += out.numel() * m.in_features

    hs = []
    for m in model.modules():
        if isinstance(m, (torch.nn.modules.conv._ConvNd,)):
            hs.append(m.register_forward_hook(conv))
        elif isinstance(m, torch.nn.Linear):
            hs.append(m.register_forward_hook(linear))
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0]


def build(name):
    for ns in (torchvision.models, torchvision.models.segmentation):
        if hasattr(ns, name):
            kwargs = {"weights": None}
            if ns is torchvision.models.segmentation:
                kwargs["weights_backbone"] = None
                kwargs["aux_loss"] = False
            return getattr(ns, name)(**kwargs).eval()
    sys.exit(f"unknown torchvision model {name}")


class FirstOutput(torch.nn.Module):
    """Segmentation models return a dict; export its 'out' tensor."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        y = self.m(x)
        return y["out"] if isinstance(y, dict) else y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--exporters", default="dynamo,torchscript")
    ap.add_argument("--graph-only", action="store_true")
    ap.add_argument("--inline-bytes", type=int, default=1024,
                    help="tensors smaller than this stay in the graph file")
    ap.add_argument("--dynamic-batch", action="store_true")
    ap.add_argument("--strip", action="store_true",
                    help="drop doc strings and node metadata except the module scopes (smaller files)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    for name in a.models:
        model = build(name)
        if isinstance(model(torch.randn(1, 3, 64, 64)), dict):
            model = FirstOutput(model).eval()
        x = torch.randn(1, 3, a.size, a.size)
        macs = hook_macs(model, x)
        params = sum(p.numel() for p in model.parameters())
        for exporter in a.exporters.split(","):
            path = os.path.join(a.out, f"{name}-{exporter}.onnx")
            data = os.path.basename(path) + ".data"
            kw = {}
            if a.dynamic_batch:
                if exporter == "dynamo":
                    kw["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
                else:
                    kw["dynamic_axes"] = {"x": {0: "batch"}}
            with torch.no_grad():
                if exporter == "dynamo":
                    torch.onnx.export(model, (x,), path, dynamo=True, external_data=True,
                                      input_names=["x"], **kw)
                else:
                    torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], **kw)
            # Re-save with every tensor over --inline-bytes in one external file.
            m = onnx.load(path, load_external_data=True)
            if os.path.exists(os.path.join(a.out, data)):
                os.remove(os.path.join(a.out, data))
            if a.strip:
                for n in m.graph.node:
                    n.doc_string = ""
                    keep = [p for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
                    del n.metadata_props[:]
                    n.metadata_props.extend(keep)
            onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data, size_threshold=a.inline_bytes)
            if a.graph_only:
                os.remove(os.path.join(a.out, data))
            print(json.dumps({"model": name, "exporter": exporter, "file": path, "macs": macs,
                              "params": params, "input": [1, 3, a.size, a.size]}), flush=True)


if __name__ == "__main__":
    main()
