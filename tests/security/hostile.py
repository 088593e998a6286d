"""Shared pieces of the findings tests (issue 10): hostile envelopes built with the real CMS
code (tests/protocols/forge.py) and ways to prove nothing was written where it must not be."""

from __future__ import annotations

import os
from pathlib import Path

from docex.agent.context import AgentContext
from docex.pki.credentials import UnitCredentials
from tests.e2e.support import Network
from tests.protocols import forge

FILES = {"正文.txt": "请各单位认真贯彻落实。".encode(), "附件.bin": os.urandom(512)}


def envelope_with_id(sender: UnitCredentials, recipient: AgentContext | UnitCredentials, message_id: str,
                     files: dict[str, bytes] | None = None, **manifest_fields: object) -> bytes:
    """A correctly signed and encrypted envelope whose header and manifest carry `message_id`
    (whatever its form): what a unit with its own keys can send."""
    creds = recipient.creds if isinstance(recipient, AgentContext) else recipient
    files = files or FILES
    m = forge.manifest(sender.address, [creds.address], files, message_id=message_id, **manifest_fields)
    return forge.wrap(forge.package(m, files), m, sender, [creds.enc_cert])


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (to compare before and after)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Watch:
    """Taken before an attack on a running exchange; `check()` afterwards: a genuine document
    between two other units (`sender` to `recipient`) was delivered meanwhile, and nothing new
    was written outside the homes' own folders (the hub's, each agent's)."""

    def __init__(self, net: Network, sender: str, recipient: str) -> None:
        self.net, self.root, self.pair = net, net.hub_home.parent, (sender, recipient)
        self.before = set(tree(self.root))

    def check(self) -> None:
        sender, recipient = self.pair
        mid, files = self.net.send(sender, [recipient], title="关于正常工作的通知")
        self.net.wait_hub(mid, "delivered", [recipient])
        assert self.net.inbox_files(recipient, mid)["附件1.bin"] == files["附件1.bin"]
        homes = [self.net.hub_home, *(self.net.home(a) for a in self.net.addresses)]
        allowed = tuple(f"{h.relative_to(self.root)}/" for h in homes)
        new = set(tree(self.root)) - self.before
        assert sorted(p for p in new if not p.startswith(allowed) and not p.endswith(".log")) == []
