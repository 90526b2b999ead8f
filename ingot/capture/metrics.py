"""The capture writer's counters as a Prometheus collector (read at scrape time)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class CaptureCollector(Collector):
    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for name, kind, text, value, labels in self._writer.readings():
            family = families.get(name)
            if family is None:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                family = families[name] = cls(name, text, labels=sorted(labels))
            family.add_metric([labels[key] for key in sorted(labels)], value)
        return list(families.values())
