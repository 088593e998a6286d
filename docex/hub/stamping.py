"""The hub's access to its own time-stamping authority (HUBDIR/tsa, the same TSA the read
API serves at /tsa): timestamps for audit checkpoints and delivery evidence, in-process."""

from __future__ import annotations

import logging

from docex.hub.config import HubConfig
from docex.pki.errors import PkiError
from docex.pki.timestamps import Stamper, local_stamper

log = logging.getLogger(__name__)


def load_stamper(config: HubConfig, passphrase: bytes | None) -> Stamper | None:
    """The hub's in-process stamper, or None when this hub runs no TSA (then evidence and
    checkpoints are signed but not timestamped, and verification says so)."""
    folder = config.home / "tsa"
    if not (folder / "tsa.crt").exists():
        return None
    from docex.pki.tsa import TimeStampAuthority

    try:
        # Every token still goes into the TSA's ledger, without an fsync each (see tsa.py).
        return local_stamper(TimeStampAuthority.load(folder, passphrase, sync_ledger=False))
    except PkiError as exc:
        log.warning("the hub's TSA cannot be used: [%s] %s", exc.code, exc.message)
        return None
