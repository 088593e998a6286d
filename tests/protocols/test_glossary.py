"""One word per state and phase: every place that names one (CLI, reports, agents, the
dashboard's i18n.js) uses the glossary's word, and no module keeps its own table."""

from __future__ import annotations

import re
from pathlib import Path

from docex.protocols import glossary

ROOT = Path(__file__).resolve().parents[2] / "docex"
CJK = re.compile(r"[\u4e00-\u9fff]")
PAIR = re.compile(r'"([a-z_]+)"\s*:\s*"([^"\n]*)"')


def _keys() -> set[str]:
    """Words for documents, units and links (certificate and seal checks have their own tables)."""
    tables = (glossary.STATES, glossary.SENDER_STATES, glossary.INBOX_STATES, glossary.PHASES,
              glossary.UNIT_STATES, glossary.LINK_STATES)
    return {key for table in tables for key in table}


def test_no_module_names_a_state_or_phase_in_its_own_words() -> None:
    """A `"signed_for": "已签收"` literal outside the glossary is a second table: use the glossary."""
    keys = _keys()
    found = []
    for path in ROOT.rglob("*.py"):
        if path.name == "glossary.py":
            continue
        for key, value in PAIR.findall(path.read_text("utf-8")):
            if key in keys and CJK.search(value):
                found.append(f"{path.relative_to(ROOT)}: {key} = {value}")
    assert found == []


def _i18n(lang: str) -> dict[str, str]:
    text = (ROOT / "monitoring" / "dashboard" / "i18n.js").read_text("utf-8")
    start = text.index(f'"{lang}": {{')
    block = text[start:text.index("\n  }", start)]
    return dict(re.findall(r'"([\w.]+)"\s*:\s*"([^"]*)"', block))


def test_the_dashboard_uses_the_glossary_words() -> None:
    zh = _i18n("zh-CN")
    prefixes = {"state": glossary.STATES, "phase": glossary.PHASES, "unitstate": glossary.UNIT_STATES}
    checked = 0
    for prefix, table in prefixes.items():
        for key, (word, _) in table.items():
            assert zh.get(f"{prefix}.{key}") == word, f"i18n.js {prefix}.{key}"
            checked += 1
    for key, value in zh.items():  # aliases of a glossary key say the same
        prefix, _, name = key.partition(".")
        if prefix == "phase" and name == "electronic_only":
            assert value == glossary.label(glossary.PHASES, "electronic")
    assert zh["unit.phase"] == glossary.label(glossary.TERMS, "phase")
    assert checked == len(glossary.STATES) + len(glossary.PHASES) + len(glossary.UNIT_STATES)


def test_every_hub_state_has_words() -> None:
    from docex.hub import states

    assert set(states.ALL) == set(glossary.STATES)
    assert glossary.both(glossary.STATES, "signed_for") == "已签收 signed for"
    assert glossary.label(glossary.PHASES, "electronic", "en") == "electronic only"
