"""The one list of words for states and phases (Chinese first, English second). The CLI,
reports, agents and the dashboard (monitoring/dashboard/i18n.js, checked by
tests/protocols/test_glossary.py) all name a state with these words and no others."""

from __future__ import annotations

# A recipient's delivery as the hub tracks it (hub/states.py), shown to everyone.
STATES: dict[str, tuple[str, str]] = {
    "accepted": ("已接收", "accepted"),
    "routed": ("已分发", "routed"),
    "delivered": ("已送达", "delivered"),
    "signed_for": ("已签收", "signed for"),
    "returned": ("已退回", "returned"),
    "rejected": ("已拒收", "refused"),
    "expired": ("已过期", "expired"),
    "paper_route": ("纸质传递", "paper route"),
    "recalled": ("已撤销", "recalled"),
    "dead_letter": ("死信", "dead-lettered"),
}

# Only the sending terminal knows these: before the hub has accepted the document.
SENDER_STATES: dict[str, tuple[str, str]] = {
    "queued": ("待发送", "queued"),
    "sent": ("已发出", "sent to the hub"),
    "waiting_for_link": ("等待链路", "waiting for link"),
    "waiting_for_directory": ("等待通讯录", "waiting for the directory"),
    "recalling": ("撤销中", "recalling"),
}

# The recipient's own inbox: a delivered document is one it still has to sign for.
INBOX_STATES: dict[str, tuple[str, str]] = {
    "delivered": ("待签收", "to sign for"),
    "signed_for": STATES["signed_for"],
    "returned": STATES["returned"],
    "recalled": STATES["recalled"],
    # Kept by the terminal until its signer's CA reaches it with the hub's directory.
    "awaiting_trust": ("等待信任", "awaiting trust"),
}

# The county plan's rollout phases (推行阶段).
PHASES: dict[str, tuple[str, str]] = {
    "pilot": ("试点", "pilot"),
    "dual_track": ("双轨运行", "dual track"),
    "electronic": ("全面电子化", "electronic only"),
}

UNIT_STATES: dict[str, tuple[str, str]] = {
    "enabled": ("启用", "enabled"),
    "disabled": ("停用", "disabled"),
}

LINK_STATES: dict[str, tuple[str, str]] = {
    "active": ("运行", "active"),
    "paused": ("已暂停", "paused"),
    "draining": ("排空中", "draining"),
}

CERT_STATES: dict[str, tuple[str, str]] = {
    "valid": ("有效", "valid"),
    "revoked": ("已吊销", "revoked"),
    "expired": ("已过期", "expired"),
}

# The seal check of a received document (agent/receiving.py seal_status).
SEAL_STATES: dict[str, tuple[str, str]] = {
    "valid": ("有效", "valid"),
    "none": ("无电子印章", "no electronic seal"),
    "unchecked": ("未核验", "not checked"),
}

# Column headings used in several places.
TERMS: dict[str, tuple[str, str]] = {
    "phase": ("推行阶段", "rollout phase"),
    "overdue": ("超期未签收", "overdue, not signed for"),
    "pending_sign_for": ("待签收", "awaiting sign-for"),
}

TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "state": STATES, "sender_state": SENDER_STATES, "inbox_state": INBOX_STATES, "phase": PHASES,
    "unitstate": UNIT_STATES, "link_state": LINK_STATES, "cert_state": CERT_STATES,
    "seal_state": SEAL_STATES, "term": TERMS,
}


def zh(table: dict[str, tuple[str, str]]) -> dict[str, str]:
    """{key: Chinese} of one table, for lookups such as `zh(STATES).get(state, state)`."""
    return {key: words[0] for key, words in table.items()}


def label(table: dict[str, tuple[str, str]], key: str, lang: str = "zh") -> str:
    words = table.get(key)
    if words is None:
        return key
    return words[0] if lang.startswith("zh") else words[1]


def both(table: dict[str, tuple[str, str]], key: str) -> str:
    """`已签收 signed for`: Chinese first, English after (CLI lines)."""
    words = table.get(key)
    return f"{words[0]} {words[1]}" if words else key
