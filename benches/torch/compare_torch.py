#!/usr/bin/env python3
"""PyTorch side of `cargo xtask bench --compare-torch`.

Runs the same workloads as kiln's bench runner (kiln_benches::workload) in PyTorch, with the same
thread count, and reports wall-clock seconds as JSON. Two modes:

  * batch:  compare_torch.py --workloads w.json [--repeats 5] [--warmup 1] [--threads 2]
            reads a JSON list of workloads, prints one JSON object {"torch": ..., "results": [...]}.
  * serve:  compare_torch.py --serve [--threads 2]
            line-delimited JSON over stdin/stdout, so the Rust side can interleave kiln and torch
            repeat by repeat:  {"op": "setup", "workload": {...}} -> {"ok": true}
                               {"op": "run"}                      -> {"seconds": 0.0123}
                               {"op": "quit"}
            The first line printed is a hello: {"ok": true, "torch": "2.x", "threads": 2}.

Workload kinds (fields as written by the Rust side):
  op          {"op": depthwise|pointwise|dw_pw|dilated|transposed|max_unpool|upsample|channel_shuffle,
               "input": [N, C, H, W], "backward": bool, ...op fields}
  model_fwd   {"model": name, "batch": B, "input": [C, H, W], "num_classes", "width_mult"}
  train_step  {"model": name, "batch": B, "input": [C, H, W], "num_classes", "width_mult", "lr"}
  train_epoch {"model": name, "dataset_dir": path to mnist-5k, "batch": B, "lr"}

PyTorch is optional for kiln: when it cannot be imported this script prints one JSON line
{"ok": false, "error": "..."} and exits with status 3.
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
    print(json.dumps({"ok": False, "error": f"PyTorch is not importable ({e}); pip install torch torchvision"}))
    sys.exit(3)


class LeNet5(nn.Module):
    """The twin of kiln_models::lenet::LeNet5 (same layers, same child names)."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def build_model(w):
    name = w["model"]
    classes = int(w.get("num_classes", 1000))
    width = float(w.get("width_mult", 1.0))
    in_ch = int(w.get("input", [3])[0]) if w.get("input") else 3
    if name == "lenet5":
        return LeNet5(in_channels=in_ch, num_classes=classes)
    import torchvision.models as tvm

    if name == "mobilenet_v2":
        return tvm.mobilenet_v2(width_mult=width, num_classes=classes)
    if name in ("resnet18", "resnet50"):
        return getattr(tvm, name)(num_classes=classes)
    if name == "mobilenet_v3_small":
        return tvm.mobilenet_v3_small(num_classes=classes)
    if name.startswith("shufflenet_v2_"):
        return getattr(tvm, name)(num_classes=classes)
    raise ValueError(f"unknown model '{name}'")


def conv_op(w):
    """Returns (module or function, n_inputs_fn) for an op workload."""
    op = w["op"]
    n, c, h, wd = w["input"]
    if op == "depthwise":
        k, s = w.get("kernel", 3), w.get("stride", 1)
        return nn.Conv2d(c, c, k, s, padding=k // 2, groups=c, bias=False)
    if op == "pointwise":
        return nn.Conv2d(c, w["out_channels"], 1, bias=False)
    if op == "dw_pw":
        k = w.get("kernel", 3)
        return nn.Sequential(
            nn.Conv2d(c, c, k, w.get("stride", 1), padding=k // 2, groups=c, bias=False),
            nn.Conv2d(c, w["out_channels"], 1, bias=False),
        )
    if op == "dilated":
        d, k = w.get("dilation", 2), w.get("kernel", 3)
        return nn.Conv2d(c, w["out_channels"], k, padding=d * (k // 2), dilation=d, bias=False)
    if op == "transposed":
        k, s = w.get("kernel", 2), w.get("stride", 2)
        return nn.ConvTranspose2d(c, w["out_channels"], k, s, bias=False)
    if op == "max_unpool":
        def f(x):
            p, i = F.max_pool2d(x, 2, 2, return_indices=True)
            return F.max_unpool2d(p, i, 2, 2)
        return f
    if op == "upsample":
        return nn.Upsample(scale_factor=w.get("scale", 2.0), mode="bilinear", align_corners=False)
    if op == "channel_shuffle":
        return nn.ChannelShuffle(w.get("groups", 2))
    raise ValueError(f"unknown op '{op}'")


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    t = torch.frombuffer(bytearray(body), dtype=torch.uint8)
    return t.reshape(dims)


class Runner:
    """One workload, set up once; `run()` executes it once."""

    def __init__(self, w):
        torch.manual_seed(0)
        self.w = w
        kind = w["kind"]
        self.kind = kind
        if kind == "op":
            self.setup_op(w)
        elif kind == "model_fwd":
            self.model = build_model(w).eval()
            self.x = torch.randn([w["batch"], *w["input"]])
        elif kind == "train_step":
            self.model = build_model(w).train()
            self.opt = torch.optim.SGD(self.model.parameters(), lr=w.get("lr", 0.01), momentum=0.9)
            self.x = torch.randn([w["batch"], *w["input"]])
            classes = int(w.get("num_classes", 10))
            self.y = torch.arange(w["batch"]) % classes
        elif kind == "train_epoch":
            self.model = build_model({**w, "input": [1, 28, 28], "num_classes": 10}).train()
            self.opt = torch.optim.SGD(self.model.parameters(), lr=w.get("lr", 0.01), momentum=0.9)
            d = w["dataset_dir"]
            imgs = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).float().div_(255.0)
            self.images = imgs.reshape(-1, 1, 28, 28).contiguous()
            self.labels = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz")).long()
        else:
            raise ValueError(f"unknown workload kind '{kind}'")

    def setup_op(self, w):
        self.f = conv_op(w)
        self.backward = bool(w.get("backward", False))
        self.x = torch.randn(w["input"], requires_grad=self.backward)

    def run(self):
        kind = self.kind
        if kind == "op":
            if self.backward:
                if isinstance(self.f, nn.Module):
                    self.f.zero_grad(set_to_none=True)
                self.x.grad = None
                self.f(self.x).sum().backward()
            else:
                with torch.no_grad():
                    self.f(self.x)
        elif kind == "model_fwd":
            with torch.no_grad():
                self.model(self.x)
        elif kind == "train_step":
            self.step(self.x, self.y)
        elif kind == "train_epoch":
            b = self.w["batch"]
            n = self.images.shape[0]
            for s in range(0, n, b):
                self.step(self.images[s:s + b], self.labels[s:s + b])

    def step(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()


def timed(runner):
    t = time.perf_counter()
    runner.run()
    return time.perf_counter() - t


def hello(threads):
    torch.set_num_threads(threads)
    return {"ok": True, "torch": torch.__version__, "threads": torch.get_num_threads()}


def serve(threads):
    print(json.dumps(hello(threads)), flush=True)
    runner = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "setup":
                runner = None
                runner = Runner(req["workload"])
                out = {"ok": True}
            elif op == "run":
                if runner is None:
                    raise ValueError("run before setup")
                out = {"seconds": timed(runner)}
            elif op == "quit":
                return
            else:
                raise ValueError(f"unknown op '{op}'")
        except Exception as e:  # noqa: BLE001 - report any failure to the Rust side
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


def batch(path, repeats, warmup, threads):
    with open(path) as f:
        workloads = json.load(f)
    info = hello(threads)
    results = []
    for w in workloads:
        r = Runner(w)
        for _ in range(warmup):
            r.run()
        samples = [timed(r) for _ in range(repeats)]
        s = sorted(samples)
        results.append({"name": w["name"], "samples_s": samples, "median_s": s[len(s) // 2]})
    print(json.dumps({"torch": info["torch"], "threads": info["threads"], "results": results}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", action="store_true", help="line-delimited JSON requests on stdin")
    p.add_argument("--workloads", help="JSON file with a list of workloads (batch mode)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    if a.serve:
        serve(a.threads)
    elif a.workloads:
        batch(a.workloads, a.repeats, a.warmup, a.threads)
    else:
        p.error("give --serve or --workloads FILE")


if __name__ == "__main__":
    main()
