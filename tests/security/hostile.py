"""Shared pieces of the findings tests (issue 10): hostile envelopes built with the real CMS
code (tests/protocols/forge.py) and ways to prove nothing was written where it must not be."""

from __future__ import annotations

import os
from pathlib import Path

from docex.agent.context import AgentContext
from docex.pki.credentials import UnitCredentials
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
