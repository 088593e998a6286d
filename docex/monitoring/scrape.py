"""Reading a /metrics page back: for end-to-end tests and the `--json` of operator tools,
so nobody parses the text format by hand."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Samples:
    """All samples of one scrape, looked up by name and (a subset of) labels."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    @classmethod
    def parse(cls, text: str) -> Samples:
        return cls(
            [
                Sample(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text)
                for s in family.samples
            ]
        )

    def find(self, name: str, **labels: str) -> Iterator[Sample]:
        for s in self.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                yield s

    def value(self, name: str, default: float | None = None, **labels: str) -> float:
        """The sum over every series of `name` matching `labels` (exact name, so counters
        are asked for as docex_..._total). Raises KeyError when none matches and no
        default is given."""
        found = list(self.find(name, **labels))
        if not found:
            if default is not None:
                return default
            raise KeyError(f"no sample {name}{labels or ''}")
        return sum(s.value for s in found)

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


def scrape(url: str, timeout: float = 10.0) -> Samples:
    """GET a /metrics URL and parse it."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (local URL)
        return Samples.parse(response.read().decode("utf-8"))
