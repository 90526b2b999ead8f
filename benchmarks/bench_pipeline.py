"""Wall time of the retraining loop as `make run` runs it (ingot-retrain through kfp's local
runner, every step a subprocess) against the same steps in one process (`ingot train`), on the
bundled digits with the default recipe; plus the compiled pipeline's size and compile time.

Prints each step's wall time for both, the pipeline's total over the in-process total (the price
of running steps as separate processes that pass artifacts, which is what a cluster run does
too), and how much of the train step was fitting the model; then one process against
`ingot train --workers 2` (MultiWorkerMirroredStrategy on loopback): wall time and test accuracy.

    .venv/bin/python benchmarks/bench_pipeline.py [--set epochs=3] [--config configs/digits-cnn.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INGOT = str(Path(sys.executable).with_name("ingot"))


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def in_process(config: str, overrides: list[str], work: Path, env: dict[str, str], *, workers: int = 1,
               label: str = "train-run") -> tuple[float, dict[str, float]]:
    argv = [INGOT, "train", "--config", config, "--model-repository", str(work / f"repo-{label}"), "--work-dir",
            str(work / label), "--workers", str(workers), *[a for o in overrides for a in ("--set", o)]]
    seconds, out = run(argv, env)
    spans = re.search(r"done in [\d.]+s \((.+)\); step outputs", out)
    steps = {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+)s", spans.group(1))} if spans else {}
    fit = re.search(r"trained (\d+) epochs in ([\d.]+)s", out)
    steps["fit"], steps["epochs"] = float(fit.group(2)), float(fit.group(1))
    steps["accuracy"] = json.loads((work / label / "evaluation.json").read_text())["metrics"]["accuracy"]
    return seconds, steps


def pipeline(config: str, overrides: list[str], work: Path, env: dict[str, str]) -> tuple[float, dict]:
    argv = [INGOT, "pipeline", "run", "--json", "--config", config, "--model-repository", str(work / "repo-pipeline"),
            "--registry", f"sqlite:///{work / 'registry.db'}", "--pipeline-root", str(work / "root"),
            *[a for o in overrides for a in ("--set", o)]]
    seconds, out = run(argv, env)
    return seconds, json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/digits-cnn.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=2,
                        help="also train with this many local workers (ingot train --workers) and compare; 1: skip")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from pipelines.retrain import compile_pipeline

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        compiled = compile_pipeline(work / "ingot-retrain.yaml")
        compile_s = time.perf_counter() - started
        size = compiled.stat().st_size
        env = {**os.environ, "INGOT_DATA_DIR": str(work / "data"), "TF_CPP_MIN_LOG_LEVEL": "2"}

        print(f"recipe {args.config} {' '.join(args.overrides)}".rstrip())
        print(f"compiled pipeline: {size:,} bytes ({size / 1024:.1f} KiB), {len(compiled.read_text().splitlines())} "
              f"lines, compiled in {compile_s:.2f} s")
        base_total, base_steps = in_process(args.config, args.overrides, work, env)
        pipe_total, report = pipeline(args.config, args.overrides, work, env)
        multi = None
        if args.workers > 1:
            multi = in_process(args.config, args.overrides, work, env, workers=args.workers, label="workers-run")
        summary = json.loads((Path(report["run_dir"]) / "train" / "model" / "training.json").read_text())

    steps = {s["name"]: s["seconds"] for s in report["steps"]}
    print(f"\n{'step':<10} {'ingot train (1 process)':>24} {'ingot pipeline run (local runner)':>34}")
    for name in ("build-data", "ingest", "train", "evaluate", "publish", "register", "reject"):
        if name in steps or name in base_steps:
            base, piped = base_steps.get(name), steps.get(name)
            print(f"{name:<10} {(f'{base:.1f} s' if base is not None else '-'):>24} "
                  f"{(f'{piped:.1f} s' if piped is not None else '-'):>34}")
    print(f"{'total':<10} {base_total:>22.1f} s {pipe_total:>32.1f} s   (whole command, start to exit)")
    print("(in one process `publish` includes the SavedModel export; the pipeline exports inside `evaluate`)")
    print(f"\npipeline / in-process: {pipe_total / base_total:.2f}x wall time")
    fit = summary["duration_s"]
    print(f"fitting the model: {base_steps['fit']:.1f} s in one process ({base_steps['epochs']:.0f} epochs), "
          f"{fit:.1f} s in the pipeline ({summary['epochs_run']} epochs; early stopping decides)")
    base_rest, pipe_rest = base_total - base_steps["fit"], pipe_total - fit
    print(f"everything but fitting: {base_rest:.1f} s in one process, {pipe_rest:.1f} s in the pipeline "
          f"({pipe_rest / base_rest:.2f}x, {pipe_rest - base_rest:+.1f} s: a Python+TensorFlow start per step, "
          "models and splits saved and reloaded between steps, the registry)")
    record = report["record"]
    print(f"gate: {'blessed' if (record['gate'] or {}).get('blessed') else 'rejected'}; "
          f"test accuracy {record['metrics']['accuracy']:.4f}")
    if multi is not None:
        multi_total, multi_steps = multi
        print(f"\n{'ingot train':<22} {'wall':>8} {'fit':>8} {'epochs':>7} {'test accuracy':>14}")
        for name, total, values in (("1 process", base_total, base_steps),
                                    (f"{args.workers} local workers", multi_total, multi_steps)):
            print(f"{name:<22} {total:7.1f}s {values['fit']:7.1f}s {values['epochs']:7.0f} {values['accuracy']:14.4f}")
        print(f"{args.workers} workers / 1 process: {multi_total / base_total:.2f}x wall time, fit "
              f"{multi_steps['fit'] / base_steps['fit']:.2f}x (on {os.cpu_count()} CPUs the workers share the "
              "cores, so the figure is the cost of collectives and worker start-up, not a speed-up)")

if __name__ == "__main__":
    main()
