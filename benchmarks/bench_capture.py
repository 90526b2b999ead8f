"""Capture benchmark: the cost of input capture at `sample: 1.0` against capture off, in one run.

`ingot gateway` (inference log off, so only capture differs) in front of one `ingot serve` of the
digits CNN (32x32), 16 concurrent single-image gRPC clients (bench_serving's load generator); the
two gateways run side by side and are measured in interleaved windows, best window each. Prints
throughput with capture off and at sample 1.0, the ratio and cost, and the bytes stored per image
(the capture store's bytes ÷ inputs written). The load generator sends few distinct images, so
most captured rows are deduplicated by hash: the figure is the request-path cost (draw, hash
lookup, enqueue) plus the writes of new inputs.

    .venv/bin/python benchmarks/bench_capture.py [--duration 4] [--rounds 3] [--model cnn]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_gateway as gateway_bench  # start_gateway, metric
import bench_serving as serving


def start(name: str, upstream: serving.Server, workdir: Path, capture: dict | None) -> serving.Server:
    """bench_gateway's gateway (log off) with a `capture` block and a capture store under `workdir`."""
    import yaml

    original = gateway_bench.start_gateway
    server = original(name, upstream, workdir, log_url=None) if capture is None else None
    if server is not None:
        return server
    real_dump = yaml.safe_dump

    def dump_with_capture(doc, *args, **kwargs):  # the routes file start_gateway writes
        return real_dump({**doc, "capture": capture}, *args, **kwargs)

    yaml.safe_dump = dump_with_capture
    previous = os.environ.get("INGOT_CAPTURE_URL")
    os.environ["INGOT_CAPTURE_URL"] = str(workdir / "capture")  # the gateway subprocess inherits it
    try:
        return original(name, upstream, workdir, log_url=None)
    finally:
        yaml.safe_dump = real_dump
        if previous is None:
            os.environ.pop("INGOT_CAPTURE_URL", None)
        else:
            os.environ["INGOT_CAPTURE_URL"] = previous


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="cnn")
    args = parser.parse_args()
    name = args.model
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        workdir = Path(tmp)
        _, size, _ = serving.MODELS[name]
        base = serving.export_model(name, workdir)
        upstream, _ = serving.start_server(name, base, workdir, batching=True)
        targets = {"direct": upstream}
        try:
            targets["capture off"] = start(name, upstream, workdir, None)
            targets["capture 1.0"] = start(name, upstream, workdir,
                                           {"sample": 1.0, "max_bytes": "1GiB", "retention_days": 1})
            windows: dict[str, list] = {}
            for _ in range(args.rounds):
                for label, target in targets.items():
                    windows.setdefault(label, []).append(
                        serving.run_load(target, "grpc", name, size, serving.CLIENTS, args.duration))
            written = gateway_bench.metric(targets["capture 1.0"], "ingot_gateway_capture_written_total")
            dedup = gateway_bench.metric(targets["capture 1.0"], "ingot_gateway_capture_deduplicated_total")
            stored = gateway_bench.metric(targets["capture 1.0"], "ingot_gateway_capture_bytes_written_total")
        finally:
            for target in targets.values():
                target.stop()
    best = {label: max(loads, key=lambda load: load.rate) for label, loads in windows.items()}
    for label, load in best.items():
        print(gateway_bench.line(f"grpc {label}:", load, "server" if label == "direct" else "gateway")
              + "  (windows " + ", ".join(f"{w.rate:.0f}" for w in windows[label]) + ")")
    ratio = best["capture 1.0"].rate / best["capture off"].rate
    print(f"capture at sample 1.0: throughput {ratio:.3f} x capture off, cost {(1 - ratio) * 100:+.1f}% (target <= 10%)")
    print(f"inputs written {written:.0f}, deduplicated {dedup:.0f}, "
          f"bytes per stored image {stored / max(written, 1):.0f} ({size[0]}x{size[1]} PNG)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
