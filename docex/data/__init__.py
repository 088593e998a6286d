"""The county's directory of units (shared/data), shipped for demos, tests and benches."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    return Path(str(resources.files(__name__) / name))


COUNTY_CSV = "yangshan-units.csv"
CITY_CSV = "qingyuan-city-units.csv"
