"""Fixtures shared by every suite: a real county PKI (and a city one) built by the real CA
code in a temporary folder, once per session."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from docex.pki.ca import CertificateAuthority
from docex.pki.credentials import PersonCredentials, UnitCredentials
from docex.pki.trust import TrustStore

COUNTY_UNITS = {
    "qingyuan.yangshan.xxzx": "阳山县信息中心",
    "qingyuan.yangshan.zfb": "阳山县人民政府办公室",
    "qingyuan.yangshan.fgj": "阳山县发展和改革局",
    "qingyuan.yangshan.jyj": "阳山县教育局",
}
# Units that keep the certificate the city's CA issued them (县委办 used the city system).
CITY_ISSUED_UNITS = {"qingyuan.yangshan.xwb": "中共阳山县委办公室"}


@contextlib.contextmanager
def logged(name: str, level: int = logging.WARNING) -> Iterator[list[str]]:
    """The messages logger `name` writes meanwhile, caught at the logger itself: caplog sees
    only what propagates to the root, and tests that set up the CLI's logging (or a library's)
    may change levels, filters or propagation for the rest of the session."""
    seen: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    saved = logger.level, logger.disabled
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.disabled = False
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.disabled = saved[1]


@dataclass
class Pki:
    root: Path
    county: CertificateAuthority
    city: CertificateAuthority
    stranger: CertificateAuthority  # a CA nobody trusts
    units: dict[str, Path] = field(default_factory=dict)
    _creds: dict[str, UnitCredentials] = field(default_factory=dict)

    def unit_dir(self, address: str) -> Path:
        return self.units[address]

    def creds(self, address: str) -> UnitCredentials:
        if address not in self._creds:
            self._creds[address] = UnitCredentials.load(self.units[address], None)
        return self._creds[address]

    def trust(self, *, city: bool = True) -> TrustStore:
        anchors = [self.county.certificate] + ([self.city.certificate] if city else [])
        crls = [self.county.crl()] + ([self.city.crl()] if city else [])
        return TrustStore(anchors, crls)

    def new_unit(self, address: str, name: str, *, ca: CertificateAuthority | None = None) -> UnitCredentials:
        directory = self.root / "extra" / address
        (ca or self.county).issue_unit(address, name, directory, None)
        self.units[address] = directory
        return self.creds(address)

    def person(self, address: str, name: str) -> PersonCredentials:
        directory = self.root / "people" / f"{address}-{name}"
        if not (directory / "person.key").exists():  # one person, one certificate per session
            self.county.issue_person(address, name, directory, None)
        return PersonCredentials.load(directory, None)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    county = CertificateAuthority.init(root / "county-ca", "阳山县信息中心", None)
    city = CertificateAuthority.init(root / "city-ca", "清远市信息中心", None)
    stranger = CertificateAuthority.init(root / "stranger-ca", "不明机构", None)
    result = Pki(root, county, city, stranger)
    for address, name in COUNTY_UNITS.items():
        county.issue_unit(address, name, root / "units" / address, None)
        result.units[address] = root / "units" / address
    for address, name in CITY_ISSUED_UNITS.items():
        city.issue_unit(address, name, root / "units" / address, None)
        result.units[address] = root / "units" / address
    return result
