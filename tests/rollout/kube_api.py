"""A loopback Kubernetes API for the actuator tests: kmock's emulator (objects, get, patch,
404) plus what the actuator relies on that kmock leaves out: `resourceVersion` preconditions
(a patch carrying a stale version gets 409, every write bumps it), forbidden objects (403, with
nothing changed), and writers that race the actuator (the object changes between its read and
its patch). It runs on its own event loop thread; the sync `kubernetes` client talks to it."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any, Self

import kmock
from kmock._internal.k8s import KubernetesError


class ResourceVersionEmulator(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.forbidden: set[tuple[str, str]] = set()  # (plural, name) the caller may not touch
        self.races: dict[tuple[str, str], int] = {}   # (plural, name) -> foreign writes to simulate
        self.versions = iter(range(1000, 10**9))

    async def _handle(self, request):  # type: ignore[no-untyped-def]
        resource, name = request.resource, request.name
        if resource is not None and name is not None:
            key = (resource.plural, name)
            if key in self.forbidden:
                return await self._render_error(KubernetesError(status=403, reason="Forbidden",
                                                                message=f"cannot touch {key}"))
            if request.action == kmock.action.UPDATE:
                known = self._known(resource, request.namespace, name)
                stored = self.objects[resource, request.namespace, name] if known else None
                if stored is not None:
                    if self.races.get(key):
                        self.races[key] -= 1
                        self._bump(stored)
                    sent = ((request.data or {}).get("metadata") or {}).get("resourceVersion")
                    if sent is not None and sent != stored["metadata"].get("resourceVersion"):
                        return await self._render_error(KubernetesError(status=409, reason="Conflict",
                                                                        message="the object has been modified"))
        response = await super()._handle(request)
        if resource is not None and name is not None and request.action == kmock.action.UPDATE \
                and self._known(resource, request.namespace, name):
            self._bump(self.objects[resource, request.namespace, name])
        return response

    def _bump(self, stored) -> None:  # type: ignore[no-untyped-def]
        metadata = copy.deepcopy(stored.raw["metadata"])
        metadata["resourceVersion"] = str(next(self.versions))
        stored["metadata"] = metadata

    def _known(self, resource, namespace, name) -> bool:  # type: ignore[no-untyped-def]
        try:
            return (resource, namespace, name) in self.objects and not self.objects[resource, namespace, name].deleted
        except KeyError:
            return False


class KubeAPI:
    """Start with `with KubeAPI() as api:`; `api.client` is a kubernetes.client.ApiClient."""

    def __enter__(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop

            async def main() -> None:
                async with ResourceVersionEmulator() as emulator, kmock.Server(emulator):
                    self.emulator = emulator
                    self.stop = asyncio.Event()
                    ready.set()
                    await self.stop.wait()

            loop.run_until_complete(main())
            loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(30), "kmock did not start"
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = str(self.emulator.url).rstrip("/")
        self.client = client.ApiClient(configuration)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)

    def put(self, resource: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        body = {**body, "metadata": {**body.get("metadata", {}), "name": name, "namespace": namespace,
                                     "resourceVersion": "1"}}
        self.emulator.objects[resource, namespace, name] = body

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        return self.emulator.objects[resource, namespace, name].raw

    def requests(self) -> list[tuple[str, str]]:
        return [(str(r.method.value), r.url.path) for r in list(self.emulator)]

    def patches(self) -> list[dict[str, Any]]:
        return [r.data for r in list(self.emulator) if str(r.method.value) == "PATCH"]
