"""`make gateway`: one `ingot serve` with every version of a model behind `ingot gateway`, the
champion the newest-but-one version and the challenger the newest (50/50 by caller), for a
try-out on one machine, with a throwaway `redis-server` (installed by `make redis`) as the
prediction cache when there is one. Prints the curl, `ingot predict` and `ingot feedback`
commands to use.

    python -m ingot.gateway.tryout [--model_repository ./model-repository] [--model digits]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ingot.errors import ConfigError, IngotError
from ingot.protocol.headers import CALLER, FEEDBACK_KEY, REQUEST_ID
from ingot.protocol.model_spec import ModelSpec
from ingot.settings import model_repository

UPSTREAM_REST, UPSTREAM_GRPC = 8511, 8510
GATEWAY_REST, GATEWAY_GRPC = 8501, 8500
REDIS_PORT = 8512


def plan(repository: str, model: str | None) -> tuple[str, dict[str, Any]]:
    """(ModelServerConfig text serving every version, routing table) for the model to try."""
    from ingot import repository as repo

    base = Path(repository).expanduser().resolve()
    models = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    name = model or (models[0] if models else None)
    versions = repo.list_versions(str(base), name) if name and (base / name).is_dir() else []
    if not name or not versions:
        raise ConfigError(f"no published model {'named ' + repr(model) + ' ' if model else ''}in {base}; "
                          "`make run` trains and publishes one")
    versions = sorted(versions)
    config = (f'model_config_list {{ config {{ name: "{name}" base_path: "{base / name}" '
              f'model_platform: "tensorflow" model_version_policy {{ all {{}} }} }} }}\n')
    upstream = {"rest": f"http://127.0.0.1:{UPSTREAM_REST}", "grpc": f"127.0.0.1:{UPSTREAM_GRPC}"}
    routes: dict[str, Any] = {
        "model": name, "caller_header": CALLER,
        "upstreams": {"champion": {**upstream, "version": versions[-2] if len(versions) > 1 else versions[-1]}},
        "weights": {"challenger": 0}, "mirror": 0, "feedback_token_file": "",
        "cache": {"ttl_s": 300},  # used when the gateway has a cache URL
    }
    if len(versions) > 1:
        routes["experiment"] = f"{name}-v{versions[-1]}-vs-v{versions[-2]}"
        routes["upstreams"]["challenger"] = {**upstream, "version": versions[-1]}
        routes["weights"]["challenger"] = 50
    else:
        routes["experiment"] = f"{name}-v{versions[-1]}"
    return config, routes


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise IngotError(f"{what} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise IngotError(f"{what} not ready after {timeout_s:.0f}s")


def _start_redis() -> subprocess.Popen[bytes] | None:
    """A throwaway redis-server for the cache (LRU, no persistence), or None when none is installed."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        return None
    return subprocess.Popen([binary, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _interrupt(*_args: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from ingot.gateway.routing import dump

    parser = argparse.ArgumentParser(prog="python -m ingot.gateway.tryout", description=__doc__)
    parser.add_argument("--model_repository", default=model_repository())
    parser.add_argument("--model", default=None, help="model name (default: the first in the repository)")
    parser.add_argument("--workdir", default=".ingot/gateway", help="where the config, routes and log go")
    args = parser.parse_args(argv)
    try:
        config, routes = plan(args.model_repository, args.model)
    except IngotError as err:
        print(f"make gateway: {err}", file=sys.stderr)
        return 1
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "models.config").write_text(config)
    (work / "routes.yaml").write_text(dump(routes))
    ingot = [sys.executable, "-m", "ingot.cli.main"]
    serve = subprocess.Popen([*ingot, "serve", "--model_config_file", str(work / "models.config"),
                              "--port", str(UPSTREAM_GRPC), "--rest_api_port", str(UPSTREAM_REST)])
    gateway = None
    redis = _start_redis()
    try:
        _wait_ready(f"http://127.0.0.1:{UPSTREAM_REST}", serve, "ingot serve")
        cache = ["--cache-url", f"redis://127.0.0.1:{REDIS_PORT}/0"] if redis is not None else []
        gateway = subprocess.Popen([*ingot, "gateway", "--routes", str(work / "routes.yaml"),
                                    "--port", str(GATEWAY_GRPC), "--rest_api_port", str(GATEWAY_REST),
                                    "--log-url", f"sqlite:///{work / 'inference-log.db'}", *cache,
                                    "--model_repository", str(Path(args.model_repository).resolve())])
        _wait_ready(f"http://127.0.0.1:{GATEWAY_REST}", gateway, "ingot gateway")
        name = routes["model"]
        print(f"""
The gateway is up: model {name!r}, champion version {routes['upstreams']['champion']['version']}"""
              + (f", challenger version {routes['upstreams']['challenger']['version']} (50% of callers)"
                 if "challenger" in routes["upstreams"] else "") + f""".
Routing table: {work / 'routes.yaml'} (edit it: the gateway re-reads it). Log: {work / 'inference-log.db'}
Prediction cache: """ + (f"redis-server on port {REDIS_PORT} (a repeated input answers with x-ingot-cache: hit)"
                         if redis is not None else "none (`make redis` installs redis-server)") + f"""

  curl -si -X POST http://127.0.0.1:{GATEWAY_REST}{ModelSpec(name).path(':predict')} -H '{CALLER}: alice' \\
       -d '{{"signature_name": "serving_bytes", "instances": [{{"b64": "'$(base64 -w0 IMAGE.png)'"}}]}}'
  ingot predict IMAGE.png --server http://127.0.0.1:{GATEWAY_REST} --model {name}
  ingot feedback <{REQUEST_ID}> <true class> --key <{FEEDBACK_KEY}> --gateway http://127.0.0.1:{GATEWAY_REST}
      (both from the answer's headers; `ingot predict` prints them)
  curl -s http://127.0.0.1:{GATEWAY_REST}/monitoring/prometheus/metrics | grep ingot_gateway

Ctrl-C stops both servers.""", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        while serve.poll() is None and gateway.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (gateway, serve, redis):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (gateway, serve, redis):
            if process is not None:
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
