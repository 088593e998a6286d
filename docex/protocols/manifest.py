"""The package manifest (`manifest.json`): who sends what to whom, the GB/T 9704 fields
of the document and a SHA-256 for every file. The same field names serve the composer
(`docex compose --meta`), the routing header and the hub's records."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from docex.protocols.address import check_address
from docex.protocols.errors import DocexError
from docex.protocols.identifiers import check_message_id

PRIORITIES = ("特急", "加急", "平急")
# On this non-classified network only these markings are allowed (after normalising:
# NFKC, invisible characters removed, spaces stripped, letters folded): none, 无, 非密,
# 公开, 内部. Every other marking is refused as `classified`: 秘密/机密/绝密 with or without
# a period (机密★5年), SECRET, and anything unknown, since an unknown marking may be one.
OPEN_CLASSIFICATIONS = ("", "无", "非密", "公开", "内部")
CLASSIFIED = ("秘密", "机密", "绝密")
MAX_CLASSIFICATION = 20
# Lengths of what a person types (in characters): a 公文 title is one line or two.
MAX_TITLE = 200
MAX_DOC_NUMBER = 120
MAX_FIELD = 2000
MAX_RECIPIENTS = 500


def normalise_classification(value: str) -> str:
    """NFKC, format characters (zero-width spaces and joiners, BOM, bidi marks) and all
    white space removed, case folded: the form the allow-list is matched against."""
    text = unicodedata.normalize("NFKC", value)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Zs", "Zl", "Zp")
                   and not ch.isspace())
    return text.casefold()


def check_classification(value: str) -> str:
    """The normalised marking if it is on the allow-list; `classified` otherwise."""
    if len(value) > MAX_CLASSIFICATION:
        raise DocexError("classified", "the classification marking is not one this network carries")
    normal = normalise_classification(value)
    if normal not in OPEN_CLASSIFICATIONS:
        raise DocexError("classified", f"a document marked {value.strip()[:MAX_CLASSIFICATION]!r} cannot "
                                       "travel on this non-classified network")
    return normal

# GB/T 9704 fields a manifest may carry besides the routing essentials.
GBT9704_FIELDS = (
    "copy_number",  # 份号
    "issuer",  # 发文机关标志
    "signer",  # 签发人
    "attachments",  # 附件说明
    "signature_name",  # 署名
    "date",  # 成文日期
    "note",  # 附注
    "printer",  # 印发机关
    "print_date",  # 印发日期
)


def new_message_id() -> str:
    return str(uuid.uuid4())


def utcnow_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class FileEntry:
    name: str
    sha256: str
    size: int
    role: str = "attachment"  # "document" for the (sealed) main PDF

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileEntry:
        return cls(str(data["name"]), str(data["sha256"]), int(data["size"]), str(data.get("role", "attachment")))


@dataclass(frozen=True)
class Manifest:
    message_id: str
    sender: str
    recipients: tuple[str, ...]  # 主送
    title: str
    doc_number: str  # 发文字号, e.g. 阳办发〔2011〕42号
    cc: tuple[str, ...] = ()  # 抄送
    priority: str = "平急"
    classification: str = ""
    created_at: str = field(default_factory=utcnow_iso)
    fields: dict[str, Any] = field(default_factory=dict)  # GB/T 9704 extras
    files: tuple[FileEntry, ...] = ()

    @property
    def all_recipients(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for address in (*self.recipients, *self.cc):
            seen.setdefault(address, None)
        return tuple(seen)

    def validate(self) -> Manifest:
        check_address(self.sender)
        if not self.recipients:
            raise DocexError("bad_metadata", "a document needs at least one main recipient (主送)")
        for address in self.all_recipients:
            check_address(address)
        if not self.title.strip():
            raise DocexError("bad_metadata", "the title (标题) is empty")
        if len(self.title) > MAX_TITLE or len(self.doc_number) > MAX_DOC_NUMBER:
            raise DocexError("bad_metadata", f"the title is limited to {MAX_TITLE} characters, "
                                             f"the document number to {MAX_DOC_NUMBER}")
        if len(self.all_recipients) > MAX_RECIPIENTS:
            raise DocexError("bad_metadata", f"at most {MAX_RECIPIENTS} recipients")
        if any(len(str(v)) > MAX_FIELD for v in self.fields.values()):
            raise DocexError("bad_metadata", f"a GB/T 9704 field is longer than {MAX_FIELD} characters")
        if self.priority not in PRIORITIES:
            raise DocexError("bad_metadata", f"priority must be one of {'/'.join(PRIORITIES)}")
        check_classification(self.classification)
        unknown = set(self.fields) - set(GBT9704_FIELDS)
        if unknown:
            raise DocexError("bad_metadata", f"unknown manifest fields: {', '.join(sorted(unknown))}")
        check_message_id(self.message_id, code="bad_metadata")
        return self

    def to_json(self) -> bytes:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        data["cc"] = list(self.cc)
        data["files"] = [asdict(f) for f in self.files]
        return json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw.decode("utf-8"))
            return cls(
                message_id=check_message_id(data["message_id"]),
                sender=str(data["sender"]),
                recipients=tuple(str(a) for a in data["recipients"]),
                cc=tuple(str(a) for a in data.get("cc", ())),
                title=str(data["title"]),
                doc_number=str(data.get("doc_number", "")),
                priority=str(data.get("priority", "平急")),
                classification=str(data.get("classification", "")),
                created_at=str(data["created_at"]),
                fields=dict(data.get("fields", {})),
                files=tuple(FileEntry.from_dict(f) for f in data.get("files", ())),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise DocexError("malformed_envelope", "manifest.json is not well formed") from exc
