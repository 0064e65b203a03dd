"""Cost of the empirical NTK: prunelab's ``empirical_ntk`` against a naive per-example Jacobian loop.

Two tables:

* **kernel** — a 256×256 trace kernel of LeNet-300-100 (1×28×28 inputs) and of CIFAR ResNet-20
  (3×32×32), freshly initialised, 10 outputs: ``empirical_ntk`` (default method) against the naive
  loop (one ``autograd.grad`` per example and output into a ``(N, C, P)`` Jacobian, then ``J Jᵀ``),
  run side by side, alternating, each in a fresh subprocess; the ratio is naive / prunelab per
  pair, reported as the median.
* **methods** — the three methods of ``empirical_ntk`` (``auto``, ``jacobian``, ``ntk_vps``) on
  smaller kernels of the same networks and of a 4096-wide MLP (the width study's largest), to
  show which is fastest on which shape.

Peak memory is the child process's peak resident set (``resource.getrusage``) minus its resident
set just before the timed call (after building the model and data, and a warm-up call on two
examples that both sides get), so it is the memory the kernel computation itself added.

    python benchmarks/bench_ntk.py [--repeats 3] [--examples 256] [--models lenet_300_100,cifar_resnet_20]
                                   [--skip-kernel | --skip-methods] [--threads 2] [--json]

The naive loop takes about ten minutes for one 256×256 ResNet-20 kernel on the reference machine, so
the README's ResNet-20 row is one pair (``--models cifar_resnet_20 --repeats 1``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

MODELS = {"lenet_300_100": (1, 28, 28), "cifar_resnet_20": (3, 32, 32)}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _model(name: str) -> torch.nn.Module:
    from prunelab.models import build_model
    from prunelab.specs import ModelSpec

    if name == "mlp_4096":
        from prunelab.experiments.ntk_width import WidthStudy, _network

        return _network(WidthStudy(), 4096, torch.Generator().manual_seed(0))
    return build_model(ModelSpec(name=name), input_shape=MODELS[name], num_classes=10, seed=0)


def _inputs(name: str, n: int) -> torch.Tensor:
    shape = (10,) if name == "mlp_4096" else MODELS[name]
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))


def naive_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The textbook computation: the Jacobian row by row with autograd, then ``J Jᵀ`` summed over outputs."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in params)
    outputs = model(x[:1]).reshape(-1).numel()
    jac = torch.empty(len(x), outputs, total)
    for i in range(len(x)):
        out = model(x[i : i + 1]).reshape(-1)
        for c in range(outputs):
            grads = torch.autograd.grad(out[c], params, retain_graph=c + 1 < outputs)
            jac[i, c] = torch.cat([g.reshape(-1) for g in grads])
    flat = jac.reshape(len(x), -1)
    return flat @ flat.T


def child(name: str, method: str, n: int, threads: int) -> dict[str, float]:
    """One measurement in this (fresh) process."""
    from prunelab.analysis.ntk import empirical_ntk

    torch.set_num_threads(threads)
    model, x = _model(name), _inputs(name, n)

    def compute(batch: torch.Tensor) -> torch.Tensor:
        if method == "naive":
            return naive_ntk(model, batch)
        return empirical_ntk(model, batch, method=method)

    compute(x[:2])  # warm-up: autograd / torch.func first-call costs, for both sides
    before = _rss_bytes()
    started = time.perf_counter()
    kernel = compute(x)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "peak_mib": max(0, peak - before) / 2**20, "trace": float(kernel.trace())}


def _spawn(name: str, method: str, n: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, method, str(n), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs per model (default 3)")
    parser.add_argument("--examples", type=int, default=256, help="kernel size for the kernel table (default 256)")
    parser.add_argument(
        "--method-examples", type=int, default=32, help="kernel size for the methods table (default 32)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"models of the kernel table (default {','.join(MODELS)})"
    )
    parser.add_argument("--skip-kernel", action="store_true", help="only the methods table")
    parser.add_argument("--skip-methods", action="store_true", help="only the kernel table")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, method, n, threads = args.child
        print(json.dumps(child(name, method, int(n), int(threads))))
        return 0

    kernel_rows = []
    for name in [] if args.skip_kernel else [m for m in args.models.split(",") if m]:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        pairs = []
        for _ in range(args.repeats):
            naive = _spawn(name, "naive", args.examples, args.threads)
            ours = _spawn(name, "auto", args.examples, args.threads)
            if abs(naive["trace"] - ours["trace"]) > 1e-3 * abs(naive["trace"]):
                raise SystemExit(f"{name}: kernels disagree (trace {naive['trace']} vs {ours['trace']})")
            pairs.append((naive, ours))
        row = {
            "model": name,
            "examples": args.examples,
            "naive_seconds": statistics.median(p[0]["seconds"] for p in pairs),
            "prunelab_seconds": statistics.median(p[1]["seconds"] for p in pairs),
            "ratio_median": statistics.median(p[0]["seconds"] / p[1]["seconds"] for p in pairs),
            "ratio_min": min(p[0]["seconds"] / p[1]["seconds"] for p in pairs),
            "ratio_max": max(p[0]["seconds"] / p[1]["seconds"] for p in pairs),
            "naive_peak_mib": max(p[0]["peak_mib"] for p in pairs),
            "prunelab_peak_mib": max(p[1]["peak_mib"] for p in pairs),
        }
        kernel_rows.append(row)
        if not args.json:
            print(
                f"{name:>16} {args.examples}x{args.examples}: naive {row['naive_seconds']:7.2f} s "
                f"({row['naive_peak_mib']:6.0f} MiB)  prunelab {row['prunelab_seconds']:7.2f} s "
                f"({row['prunelab_peak_mib']:6.0f} MiB)  ratio {row['ratio_median']:.1f} "
                f"[{row['ratio_min']:.1f}-{row['ratio_max']:.1f}]",
                flush=True,
            )
    method_rows = []
    if not args.skip_methods:
        for name in (*MODELS, "mlp_4096"):
            for method in ("auto", "jacobian", "ntk_vps", "naive"):
                if name == "mlp_4096" and method in ("jacobian", "naive"):
                    continue  # a 4096-wide Jacobian is 33.6M numbers per example: minutes and gigabytes
                result = _spawn(name, method, args.method_examples, args.threads)
                method_rows.append({"model": name, "method": method, "examples": args.method_examples, **result})
                if not args.json:
                    print(
                        f"{name:>16} {args.method_examples}x{args.method_examples} {method:>8}: "
                        f"{result['seconds']:7.2f} s  {result['peak_mib']:6.0f} MiB",
                        flush=True,
                    )
    if args.json:
        print(
            json.dumps(
                {"threads": args.threads, "torch": torch.__version__, "kernel": kernel_rows, "methods": method_rows},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
