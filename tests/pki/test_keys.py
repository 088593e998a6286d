"""Key files: PKCS#8, encrypted at rest, passphrase from a file or the environment."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from docex.pki.errors import PkiError
from docex.pki.keys import (
    generate_rsa_key,
    load_certificate,
    load_crl,
    load_private_key,
    resolve_passphrase,
    save_private_key,
)

KEY = ec.generate_private_key(ec.SECP256R1())  # fast; RSA goes through the same code


def _code(fn: object, *args: object, **kw: object) -> str:
    with pytest.raises(PkiError) as exc:
        fn(*args, **kw)  # type: ignore[operator]
    return exc.value.code


def test_encrypted_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "sign.key"
    save_private_key(path, KEY, b"correct horse")
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path, b"correct horse").public_key() == KEY.public_key()
    assert _code(load_private_key, path, None) == "key_locked"
    assert _code(load_private_key, path, b"wrong") == "key_unreadable"


def test_unencrypted_only_without_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "demo.key"
    save_private_key(path, KEY, None)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, plain
    assert load_private_key(path, None).public_key() == KEY.public_key()
    (tmp_path / "junk.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    assert _code(load_private_key, tmp_path / "junk.key", None) == "key_unreadable"


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCEX_PASSPHRASE", raising=False)
    secret = tmp_path / "pass.txt"
    secret.write_bytes(b"from-a-file\n")
    assert resolve_passphrase(passphrase_file=secret) == b"from-a-file"
    assert _code(resolve_passphrase) == "no_passphrase"
    monkeypatch.setenv("DOCEX_PASSPHRASE", "from-env")
    assert resolve_passphrase() == b"from-env"
    monkeypatch.setenv("UNIT_KEY_PW", "named-env")
    assert resolve_passphrase(passphrase_env="UNIT_KEY_PW") == b"named-env"
    assert _code(resolve_passphrase, passphrase_env="NOT_SET_ANYWHERE") == "no_passphrase"
    assert resolve_passphrase(insecure_no_passphrase=True) is None
    (tmp_path / "empty").write_bytes(b"\n")
    assert _code(resolve_passphrase, passphrase_file=tmp_path / "empty") == "no_passphrase"


def test_weak_keys_refused() -> None:
    assert _code(generate_rsa_key, 1024) == "weak_key"


def test_unreadable_certificate_and_crl(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert _code(load_certificate, bad) == "certificate_unreadable"
    bad.write_bytes(b"\x30\x03\x02\x01\x01")
    assert _code(load_certificate, bad) == "certificate_unreadable"
    assert _code(load_crl, bad) == "crl_unreadable"
