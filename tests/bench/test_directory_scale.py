"""Smoke test of bench/directory_scale.py: it runs at two small sizes and reports sane
figures (timings are never asserted), and one directory change reaches an agent as a delta
far smaller than the whole snapshot."""

from __future__ import annotations

from bench import directory_scale


def test_it_runs_and_a_change_travels_as_a_small_delta() -> None:
    rows = directory_scale.main(["--docs", "2", "--units", "8,40"])
    assert [r.units for r in rows] == [8, 40]
    for r in rows:
        assert r.doc_cpu_ms > 0 and set(r.parts_ms) == {"pack", "hub_check", "receive"}
    assert rows[1].whole_bytes > rows[0].whole_bytes  # the whole snapshot grows with the county
    assert rows[1].delta_bytes == rows[0].delta_bytes < rows[1].whole_bytes  # the delta with the change
