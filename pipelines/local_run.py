"""Background runner of a locally triggered retraining: `python -m pipelines.local_run TRIGGER_ID
REQUEST_JSON PIPELINE_ROOT` runs the request through `run_request_locally` (what `ingot pipeline
run` calls), prints the run's report as JSON, then records in the trigger table whether it
succeeded, with the registry record and pipeline run id it produced, which releases the
one-in-flight slot. The trigger database URL comes from $INGOT_MONITOR_DB_URL (not argv: passwords).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from ingot import settings
    from ingot.errors import IngotError
    from ingot.monitor.triggers import FAILED, SUCCEEDED, TriggerStore
    from ingot.registry.store import Registry
    from pipelines.launch import report_json, run_request_locally
    from pipelines.request import PipelineRequest

    trigger_id, request_path, pipeline_root = int(argv[0]), Path(argv[1]), Path(argv[2])
    try:
        request = PipelineRequest.from_json(request_path.read_text(encoding="utf-8"))
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
        record = report["record"]
        gate = "blessed" if (record.get("gate") or {}).get("blessed") else "rejected by the gate"
        state, detail = SUCCEEDED, (f"pipeline run {record.get('pipeline_run_id')}: registry record "
                                    f"#{record.get('id')}, version {record.get('version')}, {gate}")
    with Registry.from_url(os.environ[settings.MONITOR_DB_URL_ENV]) as registry:
        TriggerStore(registry.engine).finish(trigger_id, state, detail)
    return 0 if state == SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
