"""NOTES.txt tells how to call the model; the helm test pod checks each variant is AVAILABLE."""

from __future__ import annotations

import subprocess


def test_notes_show_rest_and_grpc_calls(canary_gateway):
    notes = canary_gateway.notes
    assert "curl $HOST/v1/models/ingot" in notes
    assert "/v1/models/ingot:predict" in notes and '\\"signature_name\\": \\"serving_bytes\\"' in notes
    assert "prediction_service_pb2_grpc.PredictionServiceStub" in notes
    assert 'grpc.insecure_channel("ingot.serving.svc:8500")' in notes
    assert 'request.model_spec.name = "ingot"' in notes
    assert "split 90/10" in notes
    assert "helm test ingot -n serving" in notes
    assert "x-ingot-variant: champion|challenger pins a request" in notes


def test_notes_mention_pinning_only_with_a_split(minimal):
    assert "pins a request" not in minimal.notes
    assert "the Service ingot reaches the champion only" in minimal.notes


def test_helm_test_pod_checks_every_enabled_variant(canary_gateway, minimal):
    pod = canary_gateway.get("Pod", "ingot-test-model-status")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    script = pod["spec"]["containers"][0]["args"][0]
    assert "for host in ingot-champion ingot-challenger ; do" in script
    single = minimal.get("Pod", "ingot-test-model-status")["spec"]["containers"][0]["args"][0]
    assert "for host in ingot-champion ; do" in single
    # The same AVAILABLE check as the readiness probe, which test_chart_probes runs against a stub.
    probe = canary_gateway.get("Deployment", "ingot-champion")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    for line in probe["exec"]["command"][2].splitlines():
        assert line.strip() in script
    assert subprocess.run(["bash", "-n", "-c", script], capture_output=True).returncode == 0
