"""Issue 10, low: NFC/NFD look-alike file names overwrote each other; priority and title
(and the other header fields) were not validated; hub.db, agent.db, refused/, quarantine/
and the inboxes were world-readable; keys were encrypted with PBKDF2 at 2,048 iterations.
(The receipt bound to the stored envelope digest: test_exchange_findings.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import unicodedata
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem

from docex.agent.receiving import Receiver
from docex.hub.db import Database
from docex.pki.errors import PkiError
from docex.pki.keys import generate_rsa_key, load_private_key, save_private_key
from docex.protocols import envelope as env
from docex.protocols import package as pkg
from docex.protocols.manifest import Manifest, new_message_id
from tests.agent.homes import build_county
from tests.conftest import Pki
from tests.protocols import forge

XXZX, ZFB = "qingyuan.yangshan.xxzx", "qingyuan.yangshan.zfb"


@pytest.mark.parametrize("pair", [
    (unicodedata.normalize("NFC", "通知é.txt"), unicodedata.normalize("NFD", "通知é.txt")),
    ("Notice.txt", "notice.txt"),
    ("ﬁle.txt", "ﬁle.txt".replace("ﬁ", "ﬁ")),
])
def test_look_alike_file_names_are_refused(pair: tuple[str, str]) -> None:
    first, second = pair
    if first == second:
        second = unicodedata.normalize("NFD", first.upper())
    files = {first: b"genuine", second: b"the overwriting copy"}
    m = forge.manifest(XXZX, [ZFB], files)
    with pytest.raises(PkiError) as exc:
        pkg.read(forge.package(m, files))
    assert exc.value.code == "unsafe_filename"
    with pytest.raises(PkiError) as exc:
        pkg.build(Manifest(message_id=new_message_id(), sender=XXZX, recipients=(ZFB,), title="t", doc_number="n"),
                  files)
    assert exc.value.code == "unsafe_filename"


def _manifest(**kw: object) -> Manifest:
    base = dict(message_id=new_message_id(), sender=XXZX, recipients=(ZFB,), title="关于测试的通知",
                doc_number="阳办发〔2011〕42号")
    return Manifest(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("change", [
    {"priority": "特特急"}, {"priority": ""}, {"priority": "URGENT"}, {"title": "长" * 201},
    {"doc_number": "号" * 121}, {"fields": {"note": "附" * 2001}},
])
def test_priority_title_and_lengths_are_validated(change: dict[str, object]) -> None:
    with pytest.raises(PkiError) as exc:
        _manifest(**change).validate()
    assert exc.value.code == "bad_metadata"


@pytest.mark.parametrize("change", [
    {"priority": "特特急"}, {"title": "长" * 201}, {"doc_number": "号" * 121}, {"created_at": "9" * 41},
    {"recipients": ("not an address",)}, {"cc": ("qingyuan.yangshan.x" + "y" * 300,)},
])
def test_the_hub_validates_the_routing_header(pki: Pki, change: dict[str, object]) -> None:
    """A header the hub would record and show: refused before anything is recorded."""
    sender, recipient = pki.creds(XXZX), pki.creds(ZFB)
    files = {"a.txt": b"a"}
    on_cover = {k: v for k, v in change.items() if k not in ("recipients", "cc")}
    m = forge.manifest(XXZX, list(change.get("recipients", [ZFB])), files,  # type: ignore[call-overload]
                       cc=tuple(change.get("cc", ())))  # type: ignore[call-overload]
    body = forge.wrap(forge.package(m, files), m, sender, [recipient.enc_cert], **on_cover)
    with pytest.raises(PkiError) as exc:
        env.verify_outer(body, pki.trust())
    assert exc.value.code == "bad_metadata"


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_stores_and_folders_are_private_whatever_the_umask(pki: Pki, tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: files would be 0666, folders 0777
    try:
        county = build_county(pki, tmp_path / "county")
        me = county.context(ZFB)
        db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
        with db.session():
            pass
        sender = county.context(XXZX)
        from tests.security.hostile import envelope_with_id

        mid = new_message_id()
        Receiver(me).document(envelope_with_id(sender.creds, me, mid))
        Receiver(me).document(b"garbage to quarantine")
    finally:
        os.umask(old)
    home = county.homes[ZFB]
    for folder in (home, home / "inbox", home / "outbox", home / "quarantine", home / "inbox" / mid):
        assert _mode(folder) == "0o700", folder
    for file in (home / "agent.db", tmp_path / "hub.db", *(home / "inbox" / mid).iterdir(),
                 *(home / "quarantine").iterdir()):
        assert _mode(file) == "0o600", file
    for extra in ("-wal", "-shm"):
        path = Path(f"{home / 'agent.db'}{extra}")
        assert not path.exists() or _mode(path) == "0o600"
    db.dispose()


def test_keys_at_rest_use_pbkdf2_with_600000_iterations(tmp_path: Path) -> None:
    key = generate_rsa_key()
    path = tmp_path / "unit.key"
    save_private_key(path, key, b"correct horse battery staple")
    _, _, der = asn1_pem.unarmor(path.read_bytes())
    algorithm = asn1_keys.EncryptedPrivateKeyInfo.load(der)["encryption_algorithm"].native
    assert algorithm["algorithm"] == "pbes2"
    kdf = algorithm["parameters"]["key_derivation_func"]
    assert kdf["algorithm"] == "pbkdf2" and kdf["parameters"]["iteration_count"] >= 600_000
    assert algorithm["parameters"]["encryption_scheme"]["algorithm"] == "aes256_cbc"
    assert _mode(path) == "0o600"
    loaded = load_private_key(path, b"correct horse battery staple")
    assert loaded.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    with pytest.raises(PkiError):
        load_private_key(path, b"wrong")
    opened = subprocess.run(["openssl", "pkey", "-in", str(path), "-passin", "pass:correct horse battery staple",
                             "-noout"], capture_output=True, check=False)
    assert opened.returncode == 0, opened.stderr  # interoperable: OpenSSL reads it
