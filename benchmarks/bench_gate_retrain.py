"""The gate on real retraining: the digits recipe (configs/digits-cnn.yaml) trained as champion
(the recipe's seed) and as candidates with other seeds, all on one split (the recipe's seed), each
candidate judged against the champion by the old rule (point estimates, fixed tolerance) and by
the paired gate (champion re-scored on the same test rows, floors by their bounds), in one run.
Prints each candidate's accuracy and both verdicts, then the rejection counts.

    .venv/bin/python benchmarks/bench_gate_retrain.py [--seeds 5]

Measured here (5 seeds, about 7 minutes on 2 cores; 270 test rows): champion (seed 42) 0.9704;
candidates 0.9778, 0.9778, 0.9704, 0.9667, 0.9704; rejected: old rule 0 of 5, paired gate 0 of 5.
No candidate was more than one test image worse than this champion, so the run does not separate
the two rules (bench_gate.py does).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--config", default=str(REPO / "configs" / "digits-cnn.yaml"))
    args = parser.parse_args()

    from ingot.evaluate.gate import GateThresholds, bless
    from ingot.retrain.steps import evaluate, ingest, train
    from ingot.train.config import TrainConfig

    recipe = TrainConfig.from_yaml(args.config).with_overrides(["verbose=lines"])
    thresholds = GateThresholds()
    with tempfile.TemporaryDirectory(prefix="bench-gate-retrain-") as scratch:
        work = Path(scratch)
        artifact = ingest(recipe.dataset or "bundled:digits", work / "dataset", recipe).artifact

        def scored(seed: int):  # (evaluation, test predictions) of the recipe trained from `seed`
            from ingot.data.pipeline import make_tf_dataset
            from ingot.retrain.steps import predict_validation

            config = recipe.with_overrides([f"seed={seed}"])
            trained = train(artifact, config, work / f"model-{seed}")
            result = evaluate(trained.model, artifact, recipe, thresholds, model_name="digits",
                              training_summary=trained.summary)
            test = predict_validation(trained.model, make_tf_dataset(
                artifact.test, image_size=recipe.image_size, batch_size=recipe.batch_size, training=False))
            return result, test

        champion, champion_test = scored(recipe.seed)
        old_rejections = new_rejections = 0
        rows = []
        for seed in range(1, args.seeds + 1):
            candidate, test = scored(recipe.seed + seed)
            old = bless(candidate.report, thresholds, champion.report.to_dict())
            new = bless(candidate.report, thresholds, champion.report.to_dict(), labels=test.labels,
                        predictions=test.probabilities, champion_predictions=champion_test.probabilities,
                        alpha=thresholds.alpha, seed=recipe.seed)
            old_rejections += not old.blessed
            new_rejections += not new.blessed
            rows.append((recipe.seed + seed, candidate.report.accuracy, old, new))
            print(f"seed {recipe.seed + seed}: accuracy {candidate.report.accuracy:.4f} vs champion "
                  f"{champion.report.accuracy:.4f}; old rule {'blessed' if old.blessed else 'REJECTED'}, "
                  f"paired gate {'blessed' if new.blessed else 'REJECTED'}", flush=True)
            for reason in new.reasons:
                print(f"    {reason}")
        print(f"\n{len(artifact.test)} test rows; champion seed {recipe.seed}, accuracy {champion.report.accuracy:.4f}")
        print(f"rejected: old rule {old_rejections} of {args.seeds}, paired gate {new_rejections} of {args.seeds}")


if __name__ == "__main__":
    main()
