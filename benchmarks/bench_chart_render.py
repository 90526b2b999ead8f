"""Render time of each ci scenario of charts/ingot through Helm's Go engine, and checkov's verdict on the output.

Prints the median and fastest wall time of a full render (values coalescing, schema validation, templates) per
scenario, and each scenario's ratio to the minimal scenario measured in the same run. Then, when a
checkov executable is available (CHECKOV=/path/to/checkov, or `checkov` on PATH; keep it in its own
virtualenv, it is not a project dependency), it scans the rendered chart (every scenario, with the
Prometheus Operator API present) and the built kustomize overlays, and prints passed/failed counts and
every failed check with the objects it names.

    .venv/bin/python benchmarks/bench_chart_render.py [--repeats 30] [--no-checkov]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml
from helm_python import Chart

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.charts.chart_support import CHART_DIR, PROMETHEUS_OPERATOR_API, render, scenario_names, scenario_values  # noqa: E402

BASELINE = "minimal"


def time_renders(chart: Chart, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, fastest) seconds per Helm render (values coalescing, schema validation, templates), per scenario.

    Times the engine call alone (Chart.render returns the manifests as text); parsing the YAML into
    Python objects, which the tests also do, is pure-Python work and not part of what Helm costs.
    """
    medians = {}
    for name in scenario_names():
        values = scenario_values(name)
        chart.render(values, name="ingot", namespace="serving")  # warm-up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            chart.render(values, name="ingot", namespace="serving")
            samples.append(time.perf_counter() - start)
        medians[name] = (statistics.median(samples), min(samples))
    return medians


def write_manifests(chart: Chart, out: Path) -> None:
    for name in scenario_names():
        rendered = render(chart, scenario_values(name), api_versions=[PROMETHEUS_OPERATOR_API])
        (out / f"chart-{name}.yaml").write_text(yaml.safe_dump_all(rendered.objects, sort_keys=False))
    kubectl = shutil.which("kubectl")
    if kubectl:
        for overlay in sorted((ROOT / "manifests" / "overlays").iterdir()):
            built = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
            (out / f"manifests-{overlay.name}.yaml").write_text(built)


def run_checkov(checkov: str, directory: Path) -> None:
    result = subprocess.run([checkov, "-d", str(directory), "--framework", "kubernetes", "-o", "json", "--compact"],
                            capture_output=True, text=True)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    passed = failed = 0
    failures: dict[tuple[str, str], set[str]] = defaultdict(set)
    passes: set[str] = set()
    for report in reports:
        passed += report["summary"]["passed"]
        failed += report["summary"]["failed"]
        for check in report["results"]["failed_checks"]:
            failures[(check["check_id"], check["check_name"])].add(f"{Path(check['file_path']).stem}:{check['resource']}")
        for check in report["results"]["passed_checks"]:
            passes.add(check["check_id"])
    print(f"\ncheckov {subprocess.run([checkov, '--version'], capture_output=True, text=True).stdout.strip()}: "
          f"{passed} passed, {failed} failed ({len(passes)} distinct checks passed somewhere, {len(failures)} failed somewhere)")
    for (check_id, check_name), resources in sorted(failures.items()):
        print(f"  FAILED {check_id} {check_name}")
        for resource in sorted(resources):
            print(f"         {resource}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-checkov", action="store_true")
    args = parser.parse_args()

    chart = Chart.load(CHART_DIR)
    medians = time_renders(chart, args.repeats)
    print(f"charts/ingot render time over {args.repeats} renders (helm-python-sdk, this machine; the fastest")
    print("render is the steadier figure on a shared machine)")
    print(f"{'scenario':28} {'median ms':>10} {'fastest ms':>11} {'fastest vs ' + BASELINE:>20}")
    base = medians[BASELINE][1]
    for name, (median, fastest) in medians.items():
        print(f"{name:28} {median * 1e3:10.2f} {fastest * 1e3:11.2f} {fastest / base:19.2f}x")

    if args.no_checkov:
        return 0
    checkov = os.environ.get("CHECKOV") or shutil.which("checkov")
    if not checkov:
        print("\ncheckov: not run (set CHECKOV=/path/to/checkov from a separate virtualenv)")
        return 0
    with tempfile.TemporaryDirectory(prefix="ingot-checkov-") as tmp:
        write_manifests(chart, Path(tmp))
        run_checkov(checkov, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
