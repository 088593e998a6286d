"""The routing header: the signed attribute of the outer layer that lets a hub
authenticate and route an envelope without decrypting it. It carries what a paper
envelope's cover carries (who, to whom, number, title, priority), never the content."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

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

    @property
    def all_recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.recipients, *self.cc)))

    def to_json(self) -> bytes:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        data["cc"] = list(self.cc)
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
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise DocexError("malformed_envelope", "the routing header is not well formed") from exc
