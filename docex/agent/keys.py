"""The unit's private keys at rest: re-encrypting them under a new passphrase."""

from __future__ import annotations

import os
from pathlib import Path

from docex.pki.keys import load_private_key, save_private_key
from docex.protocols.errors import DocexError

KEY_FILES = ("sign.key", "enc.key", "client.key")  # client.key: the TLS login shares it


def change_passphrase(home: str | Path, old: bytes | None, new: bytes | None) -> list[str]:
    """Both keys are opened with the old passphrase first (a wrong one changes nothing),
    written re-encrypted beside the originals, then swapped in. Returns the files changed."""
    root = Path(home)
    if not new:
        raise DocexError("no_passphrase", "the new passphrase is empty")
    keys = {name: load_private_key(root / name, old) for name in KEY_FILES if (root / name).exists()}
    if not keys:
        raise DocexError("no_credentials", f"{root} holds no unit keys")
    for name, key in keys.items():
        save_private_key(root / f"{name}.new", key, new)
    for name in keys:
        os.replace(root / f"{name}.new", root / name)
    return list(keys)
