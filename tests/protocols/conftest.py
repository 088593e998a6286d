"""Fixtures for the protocol tests: three county units and two hub certificates, taken
from (or issued by) the session's real county CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from docex.pki.credentials import UnitCredentials
from docex.pki.keys import PrivateKey, load_private_key
from tests.conftest import Pki

A, B, C = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb", "qingyuan.yangshan.fgj"


@pytest.fixture(scope="session")
def a(pki: Pki) -> UnitCredentials:
    return pki.creds(A)


@pytest.fixture(scope="session")
def b(pki: Pki) -> UnitCredentials:
    return pki.creds(B)


@pytest.fixture(scope="session")
def c(pki: Pki) -> UnitCredentials:
    return pki.creds(C)


@dataclass(frozen=True)
class Hub:
    prefix: str
    cert: x509.Certificate
    key: PrivateKey


def _hub(pki: Pki, prefix: str) -> Hub:
    out: Path = pki.root / "hubs" / prefix
    cert = pki.county.issue_server(f"{prefix} hub", out, None, hub_prefix=prefix)
    return Hub(prefix, cert, load_private_key(out / "server.key", None))


@pytest.fixture(scope="session")
def county_hub(pki: Pki) -> Hub:
    return _hub(pki, "qingyuan.yangshan")


@pytest.fixture(scope="session")
def other_hub(pki: Pki) -> Hub:
    return _hub(pki, "qingyuan.yingde")
