"""The routing header: the signed attribute of the outer layer that lets a hub
authenticate and route an envelope without decrypting it. It carries what a paper
envelope's cover carries (who, to whom, number, title, priority), never the content."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from docex.protocols.chunks import ChunkList
from docex.protocols.errors import DocexError
from docex.protocols.identifiers import check_message_id
from docex.protocols.version import PROTOCOL_VERSION


@dataclass(frozen=True)
class RoutingHeader:
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    cc: tuple[str, ...]
    priority: str
    classification: str
    size: int  # bytes of the encrypted layer
    created_at: str
    doc_number: str = ""
    title: str = ""
    protocol_version: str = PROTOCOL_VERSION
    # A large document: its big file travels in chunks, each authenticated against this
    # list (docex.protocols.chunks). None for a document that travels whole.
    chunks: ChunkList | None = None

    @property
    def all_recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.recipients, *self.cc)))

    def validate(self) -> RoutingHeader:
        """The cover's fields in their allowed forms and lengths (bad_metadata otherwise):
        what a hub records, shows and routes on."""
        from docex.pki.names import is_valid_address
        from docex.protocols.manifest import (
            MAX_DOC_NUMBER,
            MAX_RECIPIENTS,
            MAX_TITLE,
            PRIORITIES,
            check_classification,
        )

        if self.priority not in PRIORITIES:
            raise DocexError("bad_metadata", f"priority must be one of {'/'.join(PRIORITIES)}")
        if len(self.title) > MAX_TITLE or len(self.doc_number) > MAX_DOC_NUMBER or len(self.created_at) > 40:
            raise DocexError("bad_metadata", f"the title is limited to {MAX_TITLE} characters, "
                                             f"the document number to {MAX_DOC_NUMBER}")
        addresses = (self.sender, *self.recipients, *self.cc)
        if not self.recipients or len(addresses) > MAX_RECIPIENTS + 1:
            raise DocexError("bad_metadata", f"between 1 and {MAX_RECIPIENTS} recipients")
        if not all(len(a) <= 200 and is_valid_address(a) for a in addresses):
            raise DocexError("bad_metadata", "the header names an address that is not one")
        if self.size < 0 or len(self.protocol_version) > 10:
            raise DocexError("bad_metadata", "the header's size or version is not possible")
        check_classification(self.classification)
        return self

    def to_json(self) -> bytes:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        data["cc"] = list(self.cc)
        if self.chunks is None:
            data.pop("chunks")  # a whole document's header is what it always was
        else:
            data["chunks"] = self.chunks.to_dict()
        return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()

    def to_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.to_json()))

    @classmethod
    def from_json(cls, raw: bytes) -> RoutingHeader:
        try:
            data = json.loads(raw.decode("utf-8"))
            return cls(
                message_id=check_message_id(data["message_id"]),
                sender=str(data["sender"]),
                recipients=tuple(str(a) for a in data["recipients"]),
                cc=tuple(str(a) for a in data.get("cc", ())),
                priority=str(data["priority"]),
                classification=str(data.get("classification", "")),
                size=int(data["size"]),
                created_at=str(data["created_at"]),
                doc_number=str(data.get("doc_number", "")),
                title=str(data.get("title", "")),
                protocol_version=str(data["protocol_version"]),
                chunks=ChunkList.from_dict(data["chunks"]) if data.get("chunks") is not None else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise DocexError("malformed_envelope", "the routing header is not well formed") from exc
