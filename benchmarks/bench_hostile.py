"""Hostile-input benchmark (issue 9): `ingot serve` as a real process, attacked as a caller could.

1. Per hostile shape: the answer (HTTP status / gRPC code, JSON or not), the server's RSS growth
   (VmRSS from /proc before and after), and the worst /healthz latency while the request is in
   flight, next to the idle /healthz latency measured in the same run (the baseline).
2. Slow-loris: how long the server keeps a connection that sends headers, or a body, too slowly.
3. A seeded random fuzz run (default 10,000 REST and 2,000 gRPC cases: malformed HTTP, random
   and near-valid JSON, compressed and mangled bodies, UTF-16/32, odd paths, image headers,
   random TensorProtos, short tensors, undecodable bytes): server crashes, 5xx other than
   503/504 and 501, non-JSON 4xx, gRPC UNKNOWN/INTERNAL, peak RSS (VmHWM), and how many log
   lines the flood produced.

4. Issue 16's attacks: 30 gRPC requests with 4 MiB model names and 30 with 4 MiB version labels
   against `ingot serve` and against an `ingot gateway` process in front of it (RSS growth, metrics
   page size; target < 32 MiB), a model config reload, an empty feedback token file, a feedback
   body in two TCP segments, and the rollout judge endpoint (`Content-Length: -1`, an idle
   connection).

5. Evidence and feedback (`ingot gateway` processes over the same server): a routing reload (a
   rollback to weight 0) while the log's database hangs (a TCP listener that never answers) and
   8 feedback requests wait on it, against the same reload with a healthy log in the same run
   (target < 2 s), what those feedback requests got and how fast; and feedback throughput with
   feedback keys (each label's key checked) against labels with the feedback token (no key
   checked, the path every label took before keys), target >= 0.9x.

6. One 63 MiB gRPC Predict (the largest message the server takes): peak RSS growth (VmHWM) as a
   multiple of the message, for `ingot serve` (refused by the element limit, and accepted and run
   by a model whose own work is negligible) next to a bare grpc.aio server that only receives it,
   grpcio's own cost and the floor for any Python gRPC server (measured in the same run).

7. The gateway's per-row input hashes and pixel statistics at the largest batches the limits
   allow: how long one request's logging holds the event loop, inline (as before) and on the
   recorder's worker thread.

    .venv/bin/python benchmarks/bench_hostile.py [--rest-cases 10000] [--grpc-cases 2000] [--only-issue16] [--only-evidence] [--only-big-message]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "colours"
SIZE = (16, 16)


# --------------------------------------------------------------------------- server


def export_tiny_model(workdir: Path, seed: int = 0) -> Path:
    import keras

    from ingot.export.publishing import publish
    from ingot.export.saved_model import export_saved_model

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(*SIZE, 3), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    classes = ["red", "green", "blue"]
    card = {"name": MODEL, "architecture": "tiny", "training_config": {"benchmark": True},
            "data_hash": "sha256:" + "00" * 32, "metrics": {"accuracy": 0.0, "per_class": {c: {} for c in classes}},
            "drift_baseline": {}}
    artifact = export_saved_model(model, workdir / f"export-{seed}", class_names=classes, image_size=SIZE,
                                  model_card=card)
    return Path(publish(artifact, workdir / "repo", MODEL).path).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path, workdir: Path, *, model_config: Path | None = None, name: str = "serve",
                 extra: tuple[str, ...] = ()) -> None:
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "w+")
        models = ([f"--model_config_file={model_config}"] if model_config is not None
                  else list(extra) if extra else [f"--model_name={MODEL}", f"--model_base_path={base}"])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingot.cli.main", "serve", f"--port={self.grpc_port}",
             f"--rest_api_port={self.rest_port}", *models],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("ingot serve exited:\n" + self.log_path.read_text()[-3000:])
            try:
                if http_request("GET", "/readyz", port=self.rest_port)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("ingot serve did not become ready")

    def status(self, key: str) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    @property
    def rss(self) -> int:
        return self.status("VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


# --------------------------------------------------------------------------- clients


def http_request(method: str, path: str, body: bytes | None = None, headers: dict | None = None, *,
                 port: int, timeout: float = 60.0) -> tuple[int, dict, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 60.0) -> tuple[int, dict, bytes, float]:
    """Bytes on a fresh connection → (status, headers, body, seconds until the server closed)."""
    started = time.monotonic()
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        status = 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body, time.monotonic() - started


def is_json_error(headers: dict, body: bytes) -> bool:
    if not headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and set(answer) == {"error"} and bool(answer["error"])


def grpc_call(port: int, method: str, payload: bytes, timeout: float = 60.0):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(payload, timeout=timeout)
            return "OK", ""
        except grpc.RpcError as err:
            return err.code().name, err.details() or ""


PREDICT = "/tensorflow.serving.PredictionService/Predict"


def predict_bytes(inputs: dict, signature: str = "") -> bytes:
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request.SerializeToString()


def short_tensor(dtype: int, shape, value):
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=dtype)
    for d in shape:
        proto.tensor_shape.dim.add().size = d
    (proto.string_val if dtype == 7 else proto.int_val).append(value)
    return proto


def int_val_tensor(rows: int):
    """A valid uint8 image batch sent the slow way: one varint per pixel in int_val."""
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=4)
    for d in (rows, *SIZE, 3):
        proto.tensor_shape.dim.add().size = d
    proto.int_val.extend([7] * (rows * SIZE[0] * SIZE[1] * 3))
    return proto


def png_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


# --------------------------------------------------------------------------- 1. hostile shapes


def healthz_during(server: Server, attack) -> tuple[float, object]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(value=attack()))
    thread.start()
    worst = 0.0
    while True:  # at least one probe, even when the attack is answered at once
        started = time.perf_counter()
        http_request("GET", "/healthz", port=server.rest_port)
        worst = max(worst, time.perf_counter() - started)
        if not thread.is_alive():
            break
        time.sleep(0.02)
    thread.join()
    return worst, result.get("value")


def hostile_shapes(server: Server) -> list[tuple[str, str, object]]:
    port, gport = server.rest_port, server.grpc_port
    predict_path = f"/v1/models/{MODEL}:predict"

    def rest(body: bytes, headers: dict | None = None, path: str = predict_path):
        def go():
            status, h, b = http_request("POST", path, body, {"Content-Type": "application/json", **(headers or {})}, port=port)
            return f"{status} {'JSON' if is_json_error(h, b) or status == 200 else 'NOT-JSON'}"
        return go

    def raw(data: bytes):
        def go():
            status, h, b, _ = raw_exchange(port, data)
            return f"{status} {'JSON' if is_json_error(h, b) else 'NOT-JSON'}"
        return go

    def grpc(payload: bytes):
        def go():
            code, details = grpc_call(gport, PREDICT, payload)
            return f"{code}: {details[:70]}"
        return go

    head = "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n"
    bomb = zlib.compress(b"\0" * (1 << 30), 9)
    six_million = b'{"instances": [' + b",".join([b"0.5"] * 6_000_000) + b"]}"
    image_bomb = png_bytes(20000, 20000)
    deep16 = ('{"instances": ' + "[" * 40 + "1" + "]" * 40 + "}").encode("utf-16")
    return [
        ("1 gRPC string [1000] x one 1 MiB value", "", grpc(predict_bytes({"image_bytes": short_tensor(7, [1000], b"x" * (1 << 20))}, "serving_bytes"))),
        ("1 gRPC string [1000000] x one 1 KiB value", "", grpc(predict_bytes({"image_bytes": short_tensor(7, [1_000_000], b"x" * 1024)}, "serving_bytes"))),
        ("1 gRPC uint8 [5461,16,16,3], one value (40 B)", "", grpc(predict_bytes({"images": short_tensor(4, [5461, 16, 16, 3], 7)}))),
        ("5 gRPC uint8 [1024,16,16,3] as 786,432 int_val", "", grpc(predict_bytes({"images": int_val_tensor(1024)}))),
        ("2 unbalanced fast-path JSON", "", rest(b'{"instances":[0]]][[0]}')),
        ("2 corrupt gzip body", "", rest(b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"})),
        ("2 version with 5000 digits", "", raw(f"GET /v1/models/{MODEL}/versions/{'9' * 5000} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())),
        ("2 non-UTF-8 Expect header", "", raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: \xff\xfe\r\n\r\n")),
        ("3 duplicate Content-Length", "", raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}")),
        ("3 duplicate Host", "", raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n")),
        ("3 duplicate Content-Type", "", raw(head.format(predict_path, 2, "Content-Type: application/json\r\nContent-Type: text/plain\r\n").encode() + b"{}")),
        ("3 Transfer-Encoding with Content-Length", "", raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}")),
        ("3 URL of 20 KB", "", raw(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")),
        ("3 header of 20 KB", "", raw(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 20000 + b"\r\n\r\n")),
        ("3 bad method", "", raw(b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n")),
        ("3 bad HTTP version", "", raw(b"GET / HTTP/7.7\r\nHost: x\r\n\r\n")),
        ("3 HTTP/1.1 without Host", "", raw(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")),
        ("3 unknown Expect", "", raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n")),
        ("3 path /v1/models/%0a", "", raw(b"GET /v1/models/%0a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
        ("4 gRPC undecodable bytes", "", grpc(b"\xff\xff\xff\xff")),
        ("5 deflate bomb 1 MiB -> 1 GiB", f"{len(bomb)} B", rest(bomb, {"Content-Encoding": "deflate"})),
        ("5 JSON with 6,000,000 numbers", f"{len(six_million)} B", rest(six_million)),
        ("6 UTF-16 JSON, nesting 40", "", rest(deep16)),
        ("7 PNG declaring 20000x20000", f"{len(image_bomb)} B", rest(json.dumps({
            "signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(image_bomb).decode()}]}).encode())),
    ]


# --------------------------------------------------------------------------- 3. fuzz cases


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.random()
    if depth > 4 or kind < 0.4:
        return rng.choice([None, True, False, rng.randint(-300, 300), rng.random() * 1e6, 2**70, "x" * rng.randint(0, 5),
                           float("nan") if rng.random() < 0.1 else 1.5])
    if kind < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["instances", "inputs", "signature_name", "b64", "images", "image_bytes", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def pixel_tensor(rng: random.Random):
    dims = [rng.randint(0, 3), rng.choice([15, 16]), rng.choice([16, 1]), rng.choice([3, 2])]
    value = rng.choice([rng.randint(-3, 258), rng.random() * 255, True, "a"])
    for d in reversed(dims):
        value = [value] * d
    return value


def b64_item(rng: random.Random):
    choice = rng.random()
    if choice < 0.3:
        data = png_header(rng.randint(1, 70000), rng.randint(1, 70000))
    elif choice < 0.5:
        data = rng.choice([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM" + b"\xff" * 30])
    else:
        data = rng.randbytes(rng.randint(0, 64))
    return {"b64": base64.b64encode(data).decode()} if rng.random() < 0.9 else {"b64": "%%%"}


def rest_case(rng: random.Random) -> tuple[str, bytes, dict]:
    """(path, raw request bytes to send, info) for one fuzz case."""
    paths = [f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}/versions/1:predict", f"/v1/models/{MODEL}/labels/x:predict",
             f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/metadata", "/v1/models/%0a", "/v1/models/%0a:predict",
             f"/v1/models/{MODEL}/versions/{'9' * rng.randint(1, 6000)}:predict", f"/v1/models/{MODEL}:classify", "/nowhere"]
    kind = rng.random()
    if kind < 0.12:  # malformed HTTP
        return "", rng.choice([
            b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/7.7\r\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
            b"GET /" + b"a" * rng.randint(9000, 20000) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 20000 + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: " + rng.randbytes(4).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n\r\n",
            b"POST /v1/models/x:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            rng.randbytes(rng.randint(1, 200)) + b"\r\n\r\n",
        ]), {"kind": "http"}
    doc_kind = rng.random()
    if doc_kind < 0.3:
        body = json.dumps(random_json(rng)).encode()
    elif doc_kind < 0.6:
        key = rng.choice(["instances", "inputs"])
        value = pixel_tensor(rng) if rng.random() < 0.6 else [b64_item(rng) for _ in range(rng.randint(0, 3))]
        doc = {key: value}
        if rng.random() < 0.5:
            doc["signature_name"] = rng.choice(["serving_default", "serving_bytes", "", "nope"])
        body = json.dumps(doc).encode()
    elif doc_kind < 0.75:
        body = b'{"instances":[' + b"".join(rng.choice([b"[", b"]", b"0", b",", b"7"]) for _ in range(rng.randint(0, 30))) + b"]}"
    elif doc_kind < 0.85:
        body = json.dumps({"instances": random_json(rng)}, ensure_ascii=False).encode(rng.choice(["utf-16", "utf-32-le", "utf-16-be"]))
    else:
        body = rng.randbytes(rng.randint(0, 100))
    headers = {"Content-Type": rng.choice(["application/json", "application/json; charset=utf-16", "text/plain"])}
    encoding = rng.choice(["", "", "", "gzip", "deflate", "br"])
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    if encoding and rng.random() < 0.3:
        body = body[: len(body) // 2]
    if encoding:
        headers["Content-Encoding"] = encoding
    method = "POST" if rng.random() < 0.9 else rng.choice(["GET", "PUT", "DELETE"])
    path = rng.choice(paths)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return path, head.encode() + b"\r\n" + body, {"kind": "api"}


def grpc_case(rng: random.Random) -> tuple[str, bytes]:
    from tensorflow.core.framework import tensor_pb2

    methods = [PREDICT, "/tensorflow.serving.PredictionService/GetModelMetadata",
               "/tensorflow.serving.PredictionService/Classify", "/tensorflow.serving.ModelService/GetModelStatus"]
    kind = rng.random()
    if kind < 0.25:
        return rng.choice(methods), rng.randbytes(rng.randint(0, 200))
    if kind < 0.45:
        string = rng.random() < 0.5
        shape = [rng.choice([1, 64, 1025, 5461, 1_000_000, 2**40])] + ([] if string else [16, 16, 3])
        value = rng.choice([b"x", b"x" * (1 << 20), png_header(rng.randint(1, 70000), rng.randint(1, 70000))]) if string else rng.randint(0, 255)
        return PREDICT, predict_bytes({"image_bytes" if string else "images": short_tensor(7 if string else 4, shape, value)},
                                      "serving_bytes" if string else "")
    proto = tensor_pb2.TensorProto(dtype=rng.choice([0, 1, 2, 3, 4, 7, 9, 10, 14, 19, 23, 99]))
    for _ in range(rng.randint(0, 5)):
        proto.tensor_shape.dim.add().size = rng.choice([-2, -1, 0, 1, 2, 3, 16, 2**31, 2**62])
    choice = rng.choice(["content", "int", "float", "string", "none"])
    if choice == "content":
        proto.tensor_content = rng.randbytes(rng.randint(0, 2304))
    elif choice == "int":
        proto.int_val.extend(rng.randint(-(2**31), 2**31 - 1) for _ in range(rng.randint(0, 20)))
    elif choice == "float":
        proto.float_val.extend(rng.random() for _ in range(rng.randint(0, 20)))
    elif choice == "string":
        proto.string_val.extend(rng.randbytes(rng.randint(0, 30)) for _ in range(rng.randint(0, 5)))
    name = rng.choice(["images", "image_bytes", "x"])
    return PREDICT, predict_bytes({name: proto}, rng.choice(["", "serving_bytes", "nope"]))


def run_fuzz(server: Server, rest_cases: int, grpc_cases: int, seed: int) -> dict:
    import grpc

    rng = random.Random(seed)
    stats: dict = {"rest_status": Counter(), "bad_5xx": [], "non_json_4xx": [], "grpc": Counter(), "grpc_bad": []}
    rss_before = server.rss
    started = time.perf_counter()
    for _ in range(rest_cases):
        path, data, info = rest_case(rng)
        status, headers, body, _ = raw_exchange(server.rest_port, data)
        stats["rest_status"][status] += 1
        json_ok = is_json_error(headers, body) or (status == 200 and headers.get("content-type", "").startswith("application/json"))
        if status >= 500 and status not in (503, 504) and not (status == 501 and json_ok):
            stats["bad_5xx"].append((status, data[:80], body[:120]))
        if 400 <= status < 500 and not json_ok:
            stats["non_json_4xx"].append((status, data[:80], body[:120]))
        if status == 0 and not server.alive():
            break
    stats["rest_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        calls = {}
        for _ in range(grpc_cases):
            method, payload = grpc_case(rng)
            call = calls.setdefault(method, channel.unary_unary(method, request_serializer=lambda b: b,
                                                                response_deserializer=lambda b: b))
            try:
                call(payload, timeout=60)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
                if code in ("UNKNOWN", "INTERNAL"):
                    stats["grpc_bad"].append((method, payload[:40], err.details()))
            stats["grpc"][code] += 1
    stats["grpc_s"] = time.perf_counter() - started
    stats["rss_growth"] = server.rss - rss_before
    return stats


# --------------------------------------------------------------------------- evidence and feedback


class GatewayProcess:
    """`ingot gateway` over the benchmark's server, with its own routing file."""

    def __init__(self, server: Server, workdir: Path, name: str, log_url: str, *, weight: int = 0,
                 token_file: str = "", extra: tuple[str, ...] = ()) -> None:

        self.upstream = {"rest": f"http://127.0.0.1:{server.rest_port}", "grpc": f"127.0.0.1:{server.grpc_port}"}
        self.routes = workdir / f"{name}-routes.yaml"
        self.token_file = token_file
        self.set_weight(weight)
        self.rest_port = free_port()
        self.log = open(workdir / f"{name}.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingot.cli.main", "gateway", "--routes", str(self.routes), "--port", str(free_port()),
             "--rest_api_port", str(self.rest_port), "--log-url", log_url, "--routes-poll-seconds", "0.2",
             "--model_repository", str(workdir / "repo"), "--log_level", "ERROR", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        deadline = time.monotonic() + 120
        while True:
            try:
                if http_request("GET", "/readyz", port=self.rest_port)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"ingot gateway {name} did not become ready")
            time.sleep(0.2)

    def set_weight(self, weight: int) -> None:
        """Both arms on the one server (versions 1 and 2 of the tiny model would differ; the
        benchmark only needs the variant the gateway reports)."""
        import yaml

        table = {"model": MODEL, "experiment": "bench", "weights": {"challenger": weight}, "mirror": 0,
                 "upstreams": {"champion": {**self.upstream, "version": 1},
                               "challenger": {**self.upstream, "version": 2}},
                 "feedback_token_file": self.token_file}
        tmp = self.routes.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(table))
        tmp.replace(self.routes)

    def predict(self, rows: int = 1) -> tuple[int, dict]:
        image = [[[[0, 0, 0]] * SIZE[1]] * SIZE[0]] * rows
        status, headers, _ = http_request("POST", f"/v1/models/{MODEL}:predict",
                                          json.dumps({"instances": image}).encode(),
                                          {"Content-Type": "application/json"}, port=self.rest_port)
        return status, headers

    def feedback(self, item: dict, headers: dict | None = None) -> int:
        return http_request("POST", "/v1/feedback", json.dumps(item).encode(),
                            {"Content-Type": "application/json", **(headers or {})}, port=self.rest_port)[0]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reload_seconds(gateway: GatewayProcess) -> float:
    """Seconds from writing a rollback (challenger weight 100 -> 0) until the gateway answers from
    the champion."""
    gateway.set_weight(100)
    deadline = time.monotonic() + 30
    while gateway.predict()[1].get("x-ingot-variant") != "challenger":
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway never took weight 100")
        time.sleep(0.05)
    gateway.set_weight(0)
    started = time.monotonic()
    while gateway.predict()[1].get("x-ingot-variant") != "champion":
        if time.monotonic() - started > 60:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - started


def evidence_and_feedback(workdir: Path) -> None:
    """Section 5 (see the module docstring): a server with versions 1 and 2 of the tiny model (the
    gateway's champion and challenger) and gateway processes in front of it."""
    export_tiny_model(workdir, seed=1)  # version 2: another tiny model
    config = workdir / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{workdir / "repo" / MODEL}" '
                      'model_platform: "tensorflow" model_version_policy { all {} } } }')
    server = Server(workdir / "repo" / MODEL, workdir, model_config=config, name="serve-two-versions")
    try:
        _evidence_and_feedback(server, workdir)
    finally:
        server.stop()


def _evidence_and_feedback(server: Server, workdir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    print("\n5. evidence and feedback (ingot gateway processes)")
    healthy = GatewayProcess(server, workdir, "healthy", f"sqlite:///{workdir / 'evidence-log.db'}")
    try:
        baseline = float(np.median([reload_seconds(healthy) for _ in range(3)]))
    finally:
        healthy.stop()

    hung = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(hung.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    gateway = GatewayProcess(server, workdir, "hung", f"postgresql://ingot@127.0.0.1:{hung.getsockname()[1]}/log",
                             weight=100)
    try:
        _, headers = gateway.predict()
        item = {"request_id": headers["x-ingot-request-id"], "label": 0, "feedback_key": headers["x-ingot-feedback-key"]}

        def timed(_: int) -> tuple[int, float]:
            started = time.monotonic()
            return gateway.feedback(item), time.monotonic() - started

        with ThreadPoolExecutor(8) as pool:
            waiting = [pool.submit(timed, i) for i in range(8)]
            time.sleep(0.2)
            under_hang = reload_seconds(gateway)
            answers = [w.result() for w in waiting]
        codes = Counter(code for code, _ in answers)
        times = sorted(seconds for _, seconds in answers)
        print(f"  routing reload (rollback to 0), healthy log: {baseline:.2f} s (median of 3)")
        print(f"  routing reload with the log's database hung and 8 feedback requests on it: {under_hang:.2f} s "
              f"({under_hang / baseline:.1f}x; target < 2 s: {'met' if under_hang < 2 else 'NOT met'})")
        print(f"  those feedback requests: {dict(codes)}, answered in {times[0]:.2f}..{times[-1]:.2f} s "
              f"(median {times[len(times) // 2]:.2f} s)")
    finally:
        gateway.stop()
        hung.close()
        for conn in held:
            conn.close()

    token = workdir / "feedback-token"
    token.write_text("bench-" + "t" * 40)
    log_url = f"sqlite:///{workdir / 'feedback-log.db'}"
    by_key = GatewayProcess(server, workdir, "keys", log_url)
    by_token = GatewayProcess(server, workdir, "token", log_url, token_file=str(token))
    rows_per_request, requests, rounds = 8, 40, 6
    try:
        arms = (("keys", by_key, None), ("token", by_token, {"Authorization": f"Bearer {token.read_text()}"}))
        rates: dict[str, list[float]] = {"keys": [], "token": []}
        codes: dict[str, Counter] = {"keys": Counter(), "token": Counter()}
        cpu_per_label: dict[str, list[float]] = {"keys": [], "token": []}
        for round_index in range(rounds):  # alternating order: neither arm always gets the quieter machine
            for name, gateway, headers in (arms if round_index % 2 == 0 else arms[::-1]):
                items = []
                for _ in range(requests):
                    _, answer = gateway.predict(rows_per_request)
                    items += [{"request_id": answer["x-ingot-request-id"], "row": row, "label": 0,
                               **({"feedback_key": answer["x-ingot-feedback-key"]} if headers is None else {})}
                              for row in range(rows_per_request)]
                time.sleep(1.0)  # every row written before the clock starts
                cpu = cpu_seconds(gateway.process.pid)
                started = time.perf_counter()
                with ThreadPoolExecutor(4) as pool:
                    codes[name].update(pool.map(lambda i, gw=gateway, h=headers: gw.feedback(i, h), items))
                rates[name].append(len(items) / (time.perf_counter() - started))
                cpu_per_label[name].append((cpu_seconds(gateway.process.pid) - cpu) / len(items))
        for name, _, _ in arms:
            print(f"  feedback, one label a request, 4 clients, {rounds} x {requests * rows_per_request} labels with the "
                  f"{name}: median {np.median(rates[name]):.0f} labels/s (rounds {', '.join(f'{r:.0f}' for r in rates[name])}), "
                  f"gateway CPU {np.median(cpu_per_label[name]) * 1e6:.0f} us a label {dict(codes[name])}")
        ratio = float(np.median(rates["keys"]) / np.median(rates["token"]))
        cpu_ratio = float(np.median(cpu_per_label["token"]) / np.median(cpu_per_label["keys"]))
        print(f"  feedback with keys / with the token (as before keys): throughput {ratio:.2f}x, labels per gateway "
              f"CPU second {cpu_ratio:.2f}x (target >= 0.9x; throughput is the noisier figure on a shared machine)")
        from ingot.gateway.keys import FeedbackKeys

        keys = FeedbackKeys.from_file(None)
        started = time.perf_counter()
        for i in range(100_000):
            keys.key(f"{i:032x}")
        print(f"  one feedback key (HMAC-SHA256 of a request id) per answer: "
              f"{(time.perf_counter() - started) * 10:.2f} us")
    finally:
        by_key.stop()
        by_token.stop()


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- issue 16

HUGE = 4 << 20


def huge_name_payloads(kind: str) -> list[tuple[str, bytes]]:
    """30 (method, serialized request) with a 4 MiB model name (`kind` "name") or version label."""
    from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

    out = []
    for index in range(30):
        filler = (b"%02d" % index).decode() * (HUGE // 2)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = filler if kind == "name" else MODEL
        if kind == "label":
            request.model_spec.version_label = filler
        if kind == "name" and index % 2 == 0:
            status = get_model_status_pb2.GetModelStatusRequest(model_spec=request.model_spec)
            out.append(("/tensorflow.serving.ModelService/GetModelStatus", status.SerializeToString()))
        else:
            out.append((PREDICT, request.SerializeToString()))
    return out


def process_rss(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def name_attacks(label: str, pid: int, grpc_port: int, rest_port: int) -> None:
    """RSS growth of 30 × 4 MiB names and 30 × 4 MiB labels (and after the first 4, the allocator's
    high-water mark), the codes, and the metrics page before and after."""
    page_before = len(http_request("GET", "/monitoring/prometheus/metrics", port=rest_port)[2])
    for kind in ("name", "label"):
        payloads = huge_name_payloads(kind)
        start = process_rss(pid)
        codes: Counter = Counter()
        warm = start
        for index, (method, payload) in enumerate(payloads):
            code, _ = grpc_call(grpc_port, method, payload)
            codes[code] += 1
            if index == 3:
                warm = process_rss(pid)
        end = process_rss(pid)
        print(f"  {label:14s} 30 x 4 MiB model {kind + 's':6s} {dict(codes)} | RSS {(end - start) / 2**20:+6.1f} MiB "
              f"(after the first 4: {(end - warm) / 2**20:+6.1f} MiB)")
    page_after = len(http_request("GET", "/monitoring/prometheus/metrics", port=rest_port)[2])
    print(f"  {label:14s} metrics page {page_before} -> {page_after} bytes")


def issue16(server: Server, workdir: Path) -> None:
    import yaml

    print("\n4. issue 16 attacks")
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2

    reload = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(f'model_config_list {{ config {{ name: "evil" base_path: "{workdir}" '
                      'model_platform: "tensorflow" } }', reload.config)
    code, details = grpc_call(server.grpc_port, "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
                              reload.SerializeToString())
    print(f"  ingot serve    HandleReloadConfigRequest: {code} ({details[:90]})")
    name_attacks("ingot serve", server.process.pid, server.grpc_port, server.rest_port)

    routes = workdir / "routes.yaml"
    upstream = {"rest": f"http://127.0.0.1:{server.rest_port}", "grpc": f"127.0.0.1:{server.grpc_port}", "version": 1}
    table = {"model": MODEL, "experiment": "bench", "weights": {"challenger": 0}, "mirror": 0,
             "upstreams": {"champion": upstream}, "feedback_token_file": ""}
    routes.write_text(yaml.safe_dump(table))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    token = workdir / "empty-token"
    token.write_text("")
    bad_routes = workdir / "routes-empty-token.yaml"
    bad_routes.write_text(yaml.safe_dump({**table, "feedback_token_file": str(token)}))
    refused = subprocess.run([sys.executable, "-m", "ingot.cli.main", "gateway", "--routes", str(bad_routes),
                              "--port", str(free_port()), "--rest_api_port", str(free_port())],
                             capture_output=True, text=True, timeout=120, env=env)
    print(f"  ingot gateway  empty token file: exit {refused.returncode}, {len(refused.stderr.splitlines())} line: "
          f"{refused.stderr.strip()[:110]}")

    rest, grpc_port = free_port(), free_port()
    log = open(workdir / "gateway.log", "w+")
    gateway = subprocess.Popen([sys.executable, "-m", "ingot.cli.main", "gateway", "--routes", str(routes),
                                "--port", str(grpc_port), "--rest_api_port", str(rest),
                                "--log-url", f"sqlite:///{workdir / 'log.db'}", "--log_level", "WARNING"],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http_request("GET", "/readyz", port=rest)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or gateway.poll() is not None:
                raise RuntimeError("ingot gateway did not become ready")
            time.sleep(0.2)
        name_attacks("ingot gateway", gateway.pid, grpc_port, rest)
        image = [[[[0, 0, 0]] * SIZE[1]] * SIZE[0]]
        _, headers, _ = http_request("POST", f"/v1/models/{MODEL}:predict", json.dumps({"instances": image}).encode(),
                                     {"Content-Type": "application/json"}, port=rest)
        request_id = headers["x-ingot-request-id"]
        body = json.dumps({"request_id": request_id, "row": 0, "label": 0,
                           "feedback_key": headers["x-ingot-feedback-key"]}).encode()
        head = (f"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        status = 404
        for _ in range(50):  # the row is written a moment after the answer
            with socket.create_connection(("127.0.0.1", rest), timeout=30) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(head + body[:30])
                time.sleep(0.3)
                sock.sendall(body[30:])
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            status = int(answer.split(b" ", 2)[1])
            if status != 404:
                break
        print(f"  ingot gateway  {len(body)}-byte feedback body in two TCP segments 0.3 s apart: {status}")
    finally:
        gateway.terminate()
        gateway.wait(30)
        log.close()

    port = free_port()
    judge = subprocess.Popen([sys.executable, "-m", "ingot.cli.main", "rollout", "run", "--port", str(port),
                              "--interval", "5"], env={**env, "INGOT_REGISTRY_URL": f"sqlite:///{workdir / 'reg.db'}"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_request("GET", "/healthz", port=port)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the judge endpoint did not come up")
            time.sleep(0.1)
        status, _, _, seconds = raw_exchange(port, b"POST /v1/rollouts/x/gate/promote HTTP/1.1\r\nHost: x\r\n"
                                                   b"Content-Length: -1\r\n\r\n", timeout=60)
        print(f"  rollout judge  Content-Length: -1: {status} after {seconds:.2f} s")
        _, _, _, seconds = raw_exchange(port, b"", timeout=60)
        print(f"  rollout judge  idle connection closed by the server after {seconds:.1f} s (default --judge-timeout 10)")
    finally:
        judge.terminate()
        judge.wait(30)


# --------------------------------------------------------------------------- 6. one 63 MiB message

BIG_MESSAGE = 63 << 20
FLOOR_SERVER = """
import asyncio, grpc
async def main():
    async def predict(request, context):
        return b""
    handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "Predict": grpc.unary_unary_rpc_method_handler(predict)})
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((handler,))
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


def export_peak_model(base: Path) -> None:
    """A model whose work is negligible beside its input (each image's max pixel): the server's
    peak is then what serving the message costs, not the model's activations."""
    import tensorflow as tf

    class Peak(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, *SIZE, 3], tf.uint8, name="images")])
        def serve(self, images):
            return {"peak": tf.cast(tf.reduce_max(images, axis=[1, 2, 3]), tf.float32)}

    module = Peak()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})


def image_message(model: str, rows: int) -> bytes:
    from tensorflow_serving.apis import predict_pb2

    from ingot.protocol.tensors import array_to_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    array_to_proto(np.full((rows, *SIZE, 3), 7, np.uint8), request.inputs["images"])
    return request.SerializeToString()


def peak_growth(pid: int, port: int, payload: bytes, small: bytes) -> tuple[float, float, str]:
    """(VmHWM growth, VmRSS left after) ÷ the message size, and the answer's code."""
    for _ in range(3):
        grpc_call(port, PREDICT, small)
    time.sleep(0.3)
    before = process_rss(pid)
    code, _ = grpc_call(port, PREDICT, payload)
    time.sleep(0.3)
    return ((process_rss(pid, "VmHWM") - before) / len(payload), (process_rss(pid) - before) / len(payload), code)


def big_message(workdir: Path) -> None:
    """Issue 16: one 63 MiB Predict (a uint8 image batch in tensor_content) against a bare grpc.aio
    server that only receives it (grpcio's own cost: the floor) and `ingot serve`, refused by the
    default element limit and accepted with the limits raised."""
    print(f"\n6. one {BIG_MESSAGE >> 20} MiB gRPC Predict: peak RSS growth (VmHWM) / message size")
    rows = BIG_MESSAGE // (SIZE[0] * SIZE[1] * 3)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(floor.stdout.readline())
        peak, left, code = peak_growth(floor.pid, port, image_message("x", rows), image_message("x", 1))
        print(f"  {'grpc.aio server that only receives it (floor)':62s} {code:16s} peak {peak:4.2f}x, left {left:+5.2f}x")
    finally:
        floor.kill()
        floor.wait(10)
    base = workdir / "peak"
    export_peak_model(base)
    for label, extra in (("ingot serve, refused (default --max_tensor_elements)", ()),
                         ("ingot serve, accepted and run", ("--max_batch_rows=0", "--max_tensor_elements=100000000"))):
        server = Server(base, workdir, name="serve-peak", extra=("--model_name=peak", f"--model_base_path={base}", *extra))
        try:
            peak, left, code = peak_growth(server.process.pid, server.grpc_port, image_message("peak", rows),
                                           image_message("peak", 1))
            print(f"  {label:62s} {code:16s} peak {peak:4.2f}x, left {left:+5.2f}x")
        finally:
            server.stop()


def gateway_facts() -> None:
    """Issue 16: the gateway's per-row input hashes and pixel statistics at the largest batch the
    default limits allow (128 MiB of decoded images), as the event loop sees them: the time one
    `RequestRecorder.record` call holds the loop, and the loop's worst lag (a 1 ms ticker) while
    the rows are built, with the work inline (as before) and on the recorder's worker thread."""
    import asyncio

    from ingot.gateway import records
    from ingot.gateway.classes import ClassCatalog
    from ingot.gateway.metrics import GatewayMetrics
    from ingot.gateway.routing import validate

    class Sink:
        def submit(self, rows) -> None:
            pass

    table = validate({"model": MODEL, "upstreams": {"champion": {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:1",
                                                                   "version": 1}}})
    print("\n7. gateway input facts (sha256 per row, pixel mean/std) on the event loop, largest batches")
    rng = np.random.default_rng(0)
    for label, shape in (("1024 x 32x32x3 (max_batch_rows)", (1024, 32, 32, 3)),
                         ("851 x 224x224x3 = 128 MiB (max_decoded_bytes)", (851, 224, 224, 3))):
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        outputs = {"probabilities": np.full((shape[0], 5), 0.2, np.float32)}
        original = records.INLINE_FACTS_BYTES, records.INLINE_ROWS
        for mode, thresholds in (("inline (before)", (1 << 62, 1 << 62)), ("worker thread", original)):
            recorder = records.RequestRecorder(sink=Sink(), metrics=GatewayMetrics(), classes=ClassCatalog(None))
            records.INLINE_FACTS_BYTES, records.INLINE_ROWS = thresholds

            async def run() -> tuple[float, float, float]:
                lags: list[float] = []
                stop = asyncio.Event()

                async def ticker() -> None:
                    while not stop.is_set():
                        started = time.perf_counter()
                        await asyncio.sleep(0.001)
                        lags.append(time.perf_counter() - started - 0.001)

                task = asyncio.create_task(ticker())
                await asyncio.sleep(0.05)
                started = time.perf_counter()
                recorder.record(table, records.RequestState("GRPC", request_id="r"), {"images": images}, outputs, "OK",
                                variant="champion", how="weight", version=1, protocol="GRPC")
                held = time.perf_counter() - started
                await asyncio.to_thread(recorder.drain)
                total = time.perf_counter() - started
                stop.set()
                await task
                return held, max(lags), total

            try:
                held, lag, total = asyncio.run(run())
            finally:
                records.INLINE_FACTS_BYTES, records.INLINE_ROWS = original
            print(f"  {label:46s} {mode:16s} record() holds the loop {held * 1000:7.2f} ms, worst loop lag "
                  f"{lag * 1000:7.2f} ms, rows built after {total * 1000:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest-cases", type=int, default=10_000)
    parser.add_argument("--grpc-cases", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--only-issue16", action="store_true", help="run only section 4 (issue 16's attacks)")
    parser.add_argument("--only-evidence", action="store_true", help="only section 5 (evidence and feedback)")
    parser.add_argument("--only-big-message", action="store_true", help="only sections 6 and 7 (one 63 MiB gRPC message; gateway input facts)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        workdir = Path(tmp)
        if args.only_big_message:
            big_message(workdir)
            gateway_facts()
            return
        base = export_tiny_model(workdir)
        if args.only_evidence:
            evidence_and_feedback(workdir)
            return
        server = Server(base, workdir)
        try:
            idle = []
            for _ in range(50):
                t = time.perf_counter()
                http_request("GET", "/healthz", port=server.rest_port)
                idle.append(time.perf_counter() - t)
            idle_p50, idle_max = float(np.median(idle)) * 1000, max(idle) * 1000
            print(f"baseline: idle /healthz p50 {idle_p50:.1f} ms, max {idle_max:.1f} ms; server RSS {server.rss >> 20} MiB")
            if args.only_issue16:
                issue16(server, workdir)
                return

            print("\n1. hostile shapes (defect number, shape): answer | RSS growth | worst /healthz during | ratio to idle max")
            for label, size, attack in hostile_shapes(server):
                before = server.rss
                worst, answer = healthz_during(server, attack)
                growth = (server.rss - before) / (1 << 20)
                print(f"  {label:45s} {size:>11s}  {str(answer)[:80]:80s} | {growth:+6.1f} MiB | "
                      f"{worst * 1000:7.1f} ms | {worst * 1000 / idle_max:5.1f}x")

            print("\n2. stalled connections (server defaults: header 10 s, body 30 s):")
            for label, data in (
                ("headers never finished", b"POST /v1/models/x:predict HTTP/1.1\r\nHost: x\r\n"),
                ("body 10 of 1000 bytes", f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode() + b'{"inst'),
            ):
                status, headers, body, seconds = raw_exchange(server.rest_port, data, timeout=120)
                print(f"  {label:30s} {status} {'JSON' if is_json_error(headers, body) else 'NOT-JSON'}, closed by the server after {seconds:.1f} s")

            log_start = server.log_path.stat().st_size
            print(f"\n3. fuzz: {args.rest_cases} REST and {args.grpc_cases} gRPC cases (seed {args.seed})")
            stats = run_fuzz(server, args.rest_cases, args.grpc_cases, args.seed)
            time.sleep(0.5)
            with open(server.log_path, "rb") as log:
                log.seek(log_start)
                flood = log.read().decode("utf-8", errors="replace")
            print(f"  server crashed: {'NO' if server.alive() else 'YES'}")
            print(f"  REST statuses: {dict(sorted(stats['rest_status'].items()))} in {stats['rest_s']:.1f} s")
            print(f"  REST 5xx other than 503/504 and a JSON 501: {len(stats['bad_5xx'])}")
            for case in stats["bad_5xx"][:5]:
                print(f"    {case}")
            print(f"  REST 4xx without a JSON body: {len(stats['non_json_4xx'])}")
            for case in stats["non_json_4xx"][:5]:
                print(f"    {case}")
            print(f"  gRPC codes: {dict(sorted(stats['grpc'].items()))} in {stats['grpc_s']:.1f} s")
            print(f"  gRPC UNKNOWN/INTERNAL: {len(stats['grpc_bad'])}")
            for case in stats["grpc_bad"][:5]:
                print(f"    {case}")
            print(f"  server RSS growth over the fuzz run: {stats['rss_growth'] / (1 << 20):+.1f} MiB; "
                  f"peak RSS (VmHWM) {server.status('VmHWM') >> 20} MiB")
            print(f"  log during the fuzz run: {len(flood.splitlines())} lines, {len(flood)} bytes, "
                  f"{flood.count('Traceback')} tracebacks")
            issue16(server, workdir)
            evidence_and_feedback(workdir)
            big_message(workdir)
            gateway_facts()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
