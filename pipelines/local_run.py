"""Background runner of a locally triggered retraining: `python -m pipelines.local_run TRIGGER_ID
REQUEST_JSON PIPELINE_ROOT [PRODUCTION_JSON]` runs the request through `run_request_locally` (what `ingot pipeline
run` calls), prints the run's report as JSON, then records in the trigger table whether it
succeeded, with the registry record and pipeline run id it produced, which releases the
one-in-flight slot. With PRODUCTION_JSON (ingot.retrain.production.ProductionData) it first
builds the base dataset plus the labelled production rows into a dataset version, and the run
trains on that. The trigger database URL comes from $INGOT_MONITOR_DB_URL (not argv: passwords).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    from ingot import settings
    from ingot.errors import IngotError
    from ingot.monitor.triggers import FAILED, SUCCEEDED, TriggerStore
    from ingot.registry.store import Registry
    from pipelines.launch import report_json, run_request_locally
    from pipelines.request import PipelineRequest

    trigger_id, request_path, pipeline_root = int(argv[0]), Path(argv[1]), Path(argv[2])
    produced: dict[str, Any] | None = None  # the registry record the run made: links it to this trigger
    try:
        request = PipelineRequest.from_json(request_path.read_text(encoding="utf-8"))
        if len(argv) > 3:
            request = _with_production_data(request, Path(argv[3]), request_path.parent)
        report = run_request_locally(request, pipeline_root=pipeline_root,
                                     progress=lambda line: print(line, flush=True))
    except IngotError as err:
        print(f"ingot: error: {err}", flush=True)
        state, detail = FAILED, f"the local pipeline run exited with status 1 ({err}); see this log"
    except Exception as err:  # noqa: BLE001 - recorded, so the one-in-flight slot is released
        import traceback

        traceback.print_exc()
        state, detail = FAILED, f"the local pipeline run exited with status 1 ({type(err).__name__}); see this log"
    else:
        print(report_json(report), flush=True)
        record = produced = report["record"]
        gate = "blessed" if (record.get("gate") or {}).get("blessed") else "rejected by the gate"
        state, detail = SUCCEEDED, (f"pipeline run {record.get('pipeline_run_id')}: registry record "
                                    f"#{record.get('id')}, version {record.get('version')}, {gate}")
    with Registry.from_url(os.environ[settings.MONITOR_DB_URL_ENV]) as registry:
        TriggerStore(registry.engine).finish(trigger_id, state, detail, produced=produced)
    return 0 if state == SUCCEEDED else 1


def _with_production_data(request: Any, production_path: Path, run_dir: Path) -> Any:
    """The request retargeted at a new dataset version: base + labelled production rows."""
    import dataclasses

    from ingot.retrain.production import ProductionData, build_training_data
    from pipelines.request import local_registry_url

    production = ProductionData.from_json(production_path.read_text(encoding="utf-8"))
    print(f"building the training data: {production.describe()}", flush=True)
    built = build_training_data(production, model=request.model_name, dataset_uri=request.dataset_uri,
                                recipe=request.recipe, work_dir=run_dir,
                                registry_url=local_registry_url(request.registry_url))
    rows = built.build.sources["production"]
    print(f"dataset version {built.dataset_version.id} ({built.build.content_hash[:16]}): "
          f"{rows['train_rows']} production rows to train (x{production.production_weight}), "
          f"{rows['holdout_rows']} production holdout, from {rows['labelled_inputs']} labelled inputs; "
          f"{built.directory}", flush=True)
    return dataclasses.replace(request, dataset_uri=built.directory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
