"""One word per state and phase: every place that names one (CLI, reports, agents, the
dashboard's and the desk's i18n.js, the Grafana dashboards, the docs) uses the glossary's
word, no module keeps its own table, and the words it replaced appear nowhere."""

from __future__ import annotations

import json
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


def _i18n(lang: str, path: Path = ROOT / "monitoring" / "dashboard" / "i18n.js") -> dict[str, str]:
    text = path.read_text("utf-8")
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


def test_the_desk_uses_the_glossary_words() -> None:
    """The clerks' desk names the hub's states, the sender's own and the inbox's (待签收 for
    a document delivered to us) and a unit's state with the glossary's words."""
    zh = _i18n("zh-CN", ROOT / "agent" / "desk" / "static" / "i18n.js")
    checked = 0
    for key, value in zh.items():
        prefix, _, name = key.partition(".")
        if prefix == "state":
            table = next(t for t in (glossary.INBOX_STATES, glossary.SENDER_STATES, glossary.STATES) if name in t)
            assert value == glossary.label(table, name), f"desk i18n.js {key} = {value}"
            checked += 1
        elif prefix == "unit" and name in glossary.UNIT_STATES:
            assert value == glossary.label(glossary.UNIT_STATES, name), f"desk i18n.js {key} = {value}"
            checked += 1
    assert checked >= len(glossary.INBOX_STATES) + len(glossary.UNIT_STATES)


# Words the glossary replaced (issue 14: one state was 已分发, 已发出 and 待发送 in three
# places, one phase 全面电子化, 全电子 and 电子; 超期未送达 counted what was not signed for).
RETIRED = re.compile(r"全电子(?!化)|超期未送达|\"电子\"")
TEXT_FILES = ("*.py", "*.js", "*.html", "*.json", "*.yml", "*.yaml", "*.md", "*.toml", "*.sh")


def test_no_place_keeps_a_retired_word() -> None:
    repo = ROOT.parent
    places = [p for pattern in TEXT_FILES for p in ROOT.rglob(pattern)]
    places += [*(repo / "docs").rglob("*.md"), repo / "README.md", *(repo / "deploy").rglob("*")]
    found = [f"{p.relative_to(repo)}: {m.group(0)}" for p in places if p.is_file() and p.name != "glossary.py"
             for m in RETIRED.finditer(p.read_text("utf-8", errors="replace"))]
    assert found == []


def test_the_grafana_overdue_panel_says_not_signed_for() -> None:
    overdue = glossary.label(glossary.TERMS, "overdue")
    titles = [panel["title"] for board in (ROOT / "monitoring" / "grafana").rglob("*.json")
              for panel in json.loads(board.read_text("utf-8")).get("panels", []) if "title" in panel]
    late = [title for title in titles if "超期" in title]
    assert late and all(title.startswith(overdue) for title in late), late
