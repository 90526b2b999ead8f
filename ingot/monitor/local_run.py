"""Background runner of a locally triggered retraining: `python -m ingot.monitor.local_run
TRIGGER_ID ARGS...` runs `ingot ARGS...` (an `ingot pipeline run ... --json`), then records in
the trigger table whether it succeeded, with the registry record and pipeline run id it produced,
which releases the one-in-flight slot. The trigger database URL comes from $INGOT_MONITOR_DB_URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(argv: list[str]) -> int:
    from ingot.monitor.launch import DB_URL_ENV
    from ingot.monitor.triggers import FAILED, SUCCEEDED, TriggerStore
    from ingot.registry import Registry

    trigger_id, command = int(argv[0]), argv[1:]
    finished = subprocess.run([sys.executable, "-m", "ingot.cli.main", *command],
                              stdout=subprocess.PIPE, stderr=None, text=True, check=False)
    sys.stdout.write(finished.stdout)
    sys.stdout.flush()
    if finished.returncode == 0:
        state, detail = SUCCEEDED, "the pipeline finished"
        try:
            record = json.loads(finished.stdout)["record"]
            gate = "blessed" if (record.get("gate") or {}).get("blessed") else "rejected by the gate"
            detail = (f"pipeline run {record.get('pipeline_run_id')}: registry record #{record.get('id')}, "
                      f"version {record.get('version')}, {gate}")
        except (ValueError, KeyError, TypeError):
            pass
    else:
        state, detail = FAILED, f"ingot pipeline run exited with status {finished.returncode}; see this log"
    with Registry.from_url(os.environ[DB_URL_ENV]) as registry:
        TriggerStore(registry.engine).finish(trigger_id, state, detail)
    return 0 if state == SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
