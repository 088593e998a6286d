"""The package: a ZIP of `manifest.json` and the document's files. Reading is defensive:
safe names only, bounded sizes (no ZIP bombs), and every file checked against its hash."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import shutil
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from docex.protocols.errors import DocexError
from docex.protocols.manifest import FileEntry, Manifest
from docex.protocols.safepath import inside

MANIFEST_NAME = "manifest.json"
MAX_FILES = 200
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_RATIO = 200  # uncompressed/compressed beyond this is a bomb, not a document
_SAMPLE_BYTES = 64 * 1024
_FIXED_TIME = (2011, 1, 1, 0, 0, 0)  # deterministic packages: same input, same bytes
_BAD_CHARS = re.compile(r'[\x00-\x1f\\:*?"<>|]')


def check_filename(name: str) -> str:
    """A file name that is safe to write under the inbox: no paths, no device names."""
    normal = unicodedata.normalize("NFC", name)
    if (
        not normal
        or normal in (".", "..")
        or "/" in normal
        or _BAD_CHARS.search(normal)
        or normal.startswith(".")
        or len(normal.encode("utf-8")) > 200
        or normal == MANIFEST_NAME
    ):
        raise DocexError("unsafe_filename", f"unsafe file name {name!r}")
    return normal


def _refuse_lookalikes(names: list[str]) -> None:
    """Names that differ only in Unicode normal form (NFC/NFD) or case would land on the
    same file (the names are written NFC; some file systems fold case): refused."""
    seen: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            raise DocexError("unsafe_filename", f"{name!r} and {seen[key]!r} name the same file")
        seen[key] = name


@dataclass(frozen=True)
class Package:
    manifest: Manifest
    files: dict[str, bytes]


def build(manifest: Manifest, files: Mapping[str, bytes], *, main_document: str | None = None) -> bytes:
    """ZIP the files with a manifest that lists each with its SHA-256."""
    entries = []
    _refuse_lookalikes([MANIFEST_NAME, *files])
    for name, data in files.items():
        check_filename(name)
        role = "document" if name == main_document else "attachment"
        entries.append(FileEntry(name, hashlib.sha256(data).hexdigest(), len(data), role))
    full = replace(manifest, files=tuple(entries)).validate()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in [(MANIFEST_NAME, full.to_json()), *files.items()]:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = _compress_type(data)
            info.flag_bits |= 0x800  # names are UTF-8
            zf.writestr(info, data)
    return buf.getvalue()


def _compress_type(data: bytes) -> int:
    """Deflate what shrinks; store what is compressed already (sealed PDFs, scans, images):
    deflating those cost most of the time of packing a large document, for nothing."""
    sample = data[:_SAMPLE_BYTES]
    if len(sample) >= 1024 and len(zlib.compress(sample, 1)) > len(sample) * 0.9:
        return zipfile.ZIP_STORED
    return zipfile.ZIP_DEFLATED


def _read_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    # Never trust the declared size: read at most declared+1 bytes and compare.
    limit = min(info.file_size, budget)
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > info.file_size or len(data) > budget:
        raise DocexError("too_large", "the package unpacks larger than it declares")
    return data


def read(raw: bytes, *, max_unpacked: int = MAX_UNPACKED_BYTES) -> Package:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        # NotImplementedError: a central directory claiming a ZIP version past 6.3 (fuzzer)
        raise DocexError("malformed_envelope", "the package is not a valid ZIP") from exc
    if len(infos) > MAX_FILES + 1:
        raise DocexError("too_large", f"the package holds more than {MAX_FILES} files")
    total = sum(i.file_size for i in infos)
    compressed = max(1, sum(i.compress_size for i in infos))
    if total > max_unpacked or total > compressed * MAX_RATIO + 1024 * 1024:
        raise DocexError("too_large", "the package unpacks far larger than allowed (ZIP bomb?)")
    for info in infos:
        # Deflate never grows data by more than a few bytes per block: a file that declares
        # far fewer bytes than it has compressed is lying about its size (a bomb in disguise).
        if info.compress_size > info.file_size + info.file_size // 100 + 1024:
            raise DocexError("too_large", f"{info.filename!r} declares a size its data contradicts (ZIP bomb?)")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise DocexError("malformed_envelope", "the package names a file twice")
    _refuse_lookalikes(names)
    budget = max_unpacked
    contents: dict[str, bytes] = {}
    try:
        for info in infos:
            name = info.filename
            if name != MANIFEST_NAME:
                if posixpath.isabs(name) or name.startswith("\\") or ".." in name.split("/"):
                    raise DocexError("unsafe_filename", f"unsafe file name {name!r}")
                check_filename(name)
            if info.is_dir():
                raise DocexError("unsafe_filename", f"unexpected folder {name!r}")
            data = _read_bounded(zf, info, budget)
            budget -= len(data)
            contents[name] = data
    except DocexError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: an encrypted ZIP entry; zlib.error: a damaged deflate stream
        raise DocexError("malformed_envelope", "the package is damaged") from exc
    if MANIFEST_NAME not in contents:
        raise DocexError("malformed_envelope", "the package has no manifest.json")
    manifest = Manifest.from_json(contents.pop(MANIFEST_NAME))
    listed = {f.name: f for f in manifest.files}
    if set(listed) != set(contents):
        raise DocexError("digest_mismatch", "the package's files differ from its manifest")
    for name, data in contents.items():
        if hashlib.sha256(data).hexdigest() != listed[name].sha256:
            raise DocexError("digest_mismatch", f"{name} does not match its SHA-256 in the manifest")
    return Package(manifest, contents)


def extract_to(directory: str | os.PathLike[str], files: Mapping[str, bytes], *, extra: Mapping[str, bytes] | None = None) -> Path:
    """Write the files into `directory` all or nothing: into a sibling temporary folder,
    fsynced, then renamed into place. An existing `directory` is left untouched."""
    target = Path(directory)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        for name, data in {**files, **(extra or {})}.items():
            path = inside(tmp, check_filename(name) if name not in (extra or {}) else name)
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
