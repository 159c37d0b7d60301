"""Reading Prometheus text back with the official Python client's parser."""

from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

from prometheus_client.parser import text_string_to_metric_families

Key = Tuple[str, FrozenSet[Tuple[str, str]]]


def counters(text: str, prefix: str = "victor_coordinator_") -> Dict[Key, int]:
    """Every sample of the counter and histogram families under `prefix`, as integers: counts
    as they are, `_sum` (seconds) as whole nanoseconds, which it represents exactly."""
    samples: Dict[Key, int] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix) or family.type not in ("counter", "histogram"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            value = round(sample.value * 1e9) if sample.name.endswith("_sum") else int(sample.value)
            samples[(sample.name, frozenset(sample.labels.items()))] = value
    return samples
