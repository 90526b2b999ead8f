"""REST JSON codec: the standard library's json (the baseline, what Ingot used) against orjson, for
the work the server, the gateway and the client do per request, measured in one run.

1. server: encode a predict response (row and columnar form) for the digits CNN (10 classes) and
   MobileNetV2 flowers (5 classes) at batch 1 and 32, checking the bytes are identical;
2. server/gateway: decode request bodies the dense-integer fast path does not take (row objects,
   floats);
3. client: encode a uint8 image batch as a request body;
4. server/gateway: dense uint8 image bodies through the fast path (no JSON parser) against
   orjson.loads + np.asarray.

    .venv/bin/python benchmarks/bench_rest_codec.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(fn, repeat: int) -> float:
    """Best time per call in microseconds over `repeat` calls (the machine is shared)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def outputs(batch: int, classes: int) -> dict:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(batch, classes)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    class_ids = probabilities.argmax(axis=1).astype(np.int64)
    names = np.array([f"class_{i}".encode() for i in class_ids], dtype=object)
    return {"probabilities": probabilities.astype(np.float32), "class_ids": class_ids, "class_names": names}


def main() -> None:
    import orjson

    from ingot.protocol.rest import client, response, text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    r = args.repeat

    print("1. predict response encoding (server): json vs orjson, best µs per response")
    for label, classes in (("digits cnn", 10), ("mobilenet_v2 flowers", 5)):
        for batch in (1, 32):
            out = outputs(batch, classes)
            for row in (True, False):
                current = text.dumps(response.predict_response(out, row))
                fast = response.dumps_response(out, row)
                same = fast == current
                t_json = best_of(lambda: text.dumps(response.predict_response(out, row)), r)
                t_orjson = best_of(lambda: response.dumps_response(out, row), r)
                print(f"  {label:22s} batch {batch:2d} {'row' if row else 'col'}: json {t_json:8.1f}  "
                      f"orjson {t_orjson:8.1f}  = {t_json / t_orjson:5.2f}x faster  identical bytes: {same}")

    print("\n2. request body decoding (server/gateway general path): json.loads vs orjson.loads, best µs")
    images = np.random.default_rng(1).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    bodies = {
        "row objects, 32 images 32x32": json.dumps({"instances": [{"images": im.tolist()} for im in images]}).encode(),
        "floats, 32 x 32x32x3": json.dumps({"instances": (images / 255).round(3).tolist()}).encode(),
        "b64 strings, 32 x 4 KiB": json.dumps({"signature_name": "serving_bytes", "instances": [
            {"b64": "QUFB" * 1024} for _ in range(32)]}).encode(),
    }
    for label, body in bodies.items():
        t_json = best_of(lambda: json.loads(body), max(5, r // 10))
        t_orjson = best_of(lambda: orjson.loads(body), max(5, r // 10))
        print(f"  {label:32s} ({len(body) / 1e6:5.2f} MB): json {t_json:9.1f}  orjson {t_orjson:9.1f}  "
              f"= {t_json / t_orjson:5.2f}x faster")

    print("\n3. request encoding (client): json.dumps(tolist) vs orjson numpy, best µs")
    for batch in (1, 32):
        batch_images = images[:batch]
        t_json = best_of(lambda: text.dumps(client.predict_request_document("", {"images": batch_images})), r)
        t_orjson = best_of(lambda: client.dumps_request("", {"images": batch_images}), r)
        same = client.dumps_request("", {"images": batch_images}) == text.dumps(
            client.predict_request_document("", {"images": batch_images}))
        print(f"  uint8 batch {batch:2d} of 32x32x3: json {t_json:9.1f}  orjson {t_orjson:9.1f}  "
              f"= {t_json / t_orjson:5.2f}x faster  identical bytes: {same}")

    print("\n4. dense uint8 image bodies (server/gateway fast path): orjson.loads + np.asarray (the baseline) "
          "vs the fast path, best µs")

    from ingot.protocol.rest.fast import dense_request_parts, parse_dense_integer_array

    rng = np.random.default_rng(0)
    for shape in ((1, 32, 32, 3), (1, 160, 160, 3), (32, 160, 160, 3)):
        body = json.dumps({"instances": rng.integers(0, 256, shape, dtype=np.uint8).tolist()}).encode()
        repeat = max(3, r // 20) if shape[0] > 1 else r
        t_orjson = best_of(lambda: np.asarray(orjson.loads(body)["instances"], dtype=np.int64), repeat)
        t_fast = best_of(lambda: parse_dense_integer_array(dense_request_parts(body)[2]), repeat)
        print(f"  {'x'.join(map(str, shape)):14s} ({len(body) / 1e6:5.2f} MB): orjson+asarray {t_orjson:9.1f}  "
              f"fast path {t_fast:9.1f}  = {t_orjson / t_fast:5.2f}x faster")


if __name__ == "__main__":
    main()
