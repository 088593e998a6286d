"""The error catalogue is the single list of codes: every code raised in the foundation
has its Chinese and English line."""

from __future__ import annotations

import re
from pathlib import Path

from docex.pki.errors import PkiError
from docex.protocols.errors import CODES, DocexError, describe

ROOT = Path(__file__).resolve().parents[2] / "docex"
FOUNDATION = [
    *(ROOT / "protocols").glob("*.py"),
    *(ROOT / "pki" / f"{m}.py" for m in ("ca", "trust", "cms", "keys", "names", "credentials")),
    *(ROOT / "cli" / f"{m}.py" for m in ("pki", "envelope", "options")),
]


def test_every_raised_code_is_catalogued() -> None:
    raised = set()
    for path in FOUNDATION:
        raised |= set(re.findall(r'(?:DocexError|PkiError)\(\s*"([a-z_]+)"', path.read_text("utf-8")))
    assert len(raised) > 20
    assert raised - set(CODES) == set()


def test_codes_have_both_languages() -> None:
    for code, (zh, en) in CODES.items():
        assert re.fullmatch(r"[a-z_]+", code)
        assert zh and en and "\n" not in zh + en
    assert describe("certificate_revoked") == "证书已被吊销"
    assert describe("certificate_revoked", "en") == "the certificate has been revoked"
    assert describe("no_such_code") == ""


def test_one_type_to_catch() -> None:
    err = DocexError("too_large", "the envelope is over the limit")
    assert isinstance(err, PkiError) and err.code == "too_large"
    assert str(err) == "too_large: the envelope is over the limit"
