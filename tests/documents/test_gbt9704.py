"""The GB/T 9704-2012 conformance table, measured on a composed 3-page 通知 (pdfplumber),
and the table in docs/ kept equal to what is measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.documents import gbt9704

DOC = Path(__file__).resolve().parents[2] / "docs" / "gbt9704-conformance.md"


@pytest.fixture(scope="module")
def rows() -> list[gbt9704.Row]:
    return gbt9704.measure(gbt9704.composed())


def test_every_measured_requirement_passes(rows: list[gbt9704.Row]) -> None:
    failed = [f"{r.requirement}: {r.measured}" for r in rows if not r.ok]
    assert not failed, failed
    assert len(rows) >= 13


def test_the_table_in_docs_is_what_is_measured(rows: list[gbt9704.Row]) -> None:
    assert gbt9704.table(rows) in DOC.read_text("utf-8"), "regenerate: python -m tests.documents.gbt9704"
