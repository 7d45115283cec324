"""The PyTorch peer of the executor benchmark (benches/benches/executor.rs).

Runs the digits MLP (64 -> 128 -> ReLU -> 10) with the weights and the batch the
benchmark hands it, on the CPU, and reports the median time of a forward pass
and its logits (so the benchmark can check both ran the same computation).

    python digits_mlp.py SPEC.json

SPEC: {"weights": {name: {"shape": [..], "values": [..]}}, "batch": [[64 floats]],
"iters": N, "threads": T}. Prints one JSON line: {"torch": version, "threads": T,
"median_ns": ns, "forward_ns": ns, "logits": [[10 floats] per image]}:
median_ns from Python lists to Python lists, forward_ns the pass on a prebuilt
tensor alone.

Not a dependency of any test: the benchmark runs it only when a Python with
torch is found (PLEXUS_TORCH_PYTHON, or ~/.cache/plexus/torch-venv/bin/python).
"""

import json
import statistics
import sys
import time

import torch


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    w = spec["weights"]

    def t(name):
        return torch.tensor(w[name]["values"], dtype=torch.float32).reshape(w[name]["shape"])

    # Burn's Linear keeps its weight as [in, out]; torch's as [out, in].
    l1 = torch.nn.Linear(64, 128)
    l2 = torch.nn.Linear(128, 10)
    with torch.no_grad():
        l1.weight.copy_(t("l1.weight").T)
        l1.bias.copy_(t("l1.bias"))
        l2.weight.copy_(t("l2.weight").T)
        l2.bias.copy_(t("l2.bias"))
    model = torch.nn.Sequential(l1, torch.nn.ReLU(), l2).eval()
    batch = spec["batch"]
    samples = []
    with torch.inference_mode():
        for _ in range(max(10, spec["iters"] // 10)):
            model(torch.tensor(batch, dtype=torch.float32)).tolist()
        for _ in range(spec["iters"]):
            start = time.perf_counter_ns()
            # The same work as the bare Burn pass: a tensor from the host's
            # floats, the forward pass, the logits back as host floats.
            out = model(torch.tensor(batch, dtype=torch.float32)).tolist()
            samples.append(time.perf_counter_ns() - start)
        # And the forward pass alone, on a tensor built beforehand: what torch
        # costs once the Python-list conversions are out of the way.
        x = torch.tensor(batch, dtype=torch.float32)
        forward = []
        for _ in range(spec["iters"]):
            start = time.perf_counter_ns()
            model(x)
            forward.append(time.perf_counter_ns() - start)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": spec["threads"],
        "median_ns": statistics.median(samples),
        "forward_ns": statistics.median(forward),
        "logits": out,
    }))


if __name__ == "__main__":
    main()
