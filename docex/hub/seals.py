"""Seal impressions (印模) registered by the information centre: checked, stored against
the unit, audited, and sent (signed by the hub) to that unit's agent through the outbox."""

from __future__ import annotations

import hashlib
import io

from docex.hub import audit, outbox
from docex.hub.config import HubConfig
from docex.hub.db import Database
from docex.hub.identity import HubIdentity
from docex.hub.models import Unit
from docex.protocols import messages
from docex.protocols.address import Route
from docex.protocols.errors import DocexError
from docex.protocols.seal_registration import make_registration

MAX_SEAL_BYTES = 2 * 1024 * 1024


def check_image(png: bytes) -> tuple[int, int]:
    """A seal impression is a PNG (transparency expected), of sane size."""
    from PIL import Image, UnidentifiedImageError

    if len(png) > MAX_SEAL_BYTES:
        raise DocexError("too_large", f"the seal image is over {MAX_SEAL_BYTES // 1024} KB")
    try:
        with Image.open(io.BytesIO(png)) as img:
            if img.format != "PNG":
                raise DocexError("bad_metadata", f"the seal image must be a PNG, not {img.format}")
            img.verify()
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DocexError("bad_metadata", "the seal image is not a readable PNG") from exc


def register_seal(config: HubConfig, db: Database, identity: HubIdentity, address: str, png: bytes,
                  *, actor: str = "information-centre") -> str:
    """Store and distribute; returns the image's SHA-256. The hub's outbox relay delivers
    the signed registration to the unit's queue (now if the hub runs, else when it starts)."""
    width, height = check_image(png)
    digest = hashlib.sha256(png).hexdigest()
    _, der = make_registration(address, png, config.prefix, identity.cert, identity.key)
    with db.session() as s:
        unit = s.get(Unit, address)
        if unit is None:
            raise DocexError("unknown_recipient", f"no unit {address} in the directory")
        unit.seal_png = png
        outbox.add(s, key=f"seal|{address}|{digest}", kind=messages.SEAL, route=Route("local"), address=address, body=der)
        audit.append(s, actor, "seal.register", address, sha256=digest, width=width, height=height)
    return digest
