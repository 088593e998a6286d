"""`docex envelope`: pack, inspect and open envelopes by hand (and in scripts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from cryptography import x509

from docex.cli.options import (
    PassphraseSource,
    echo_json,
    handles_errors,
    json_option,
    passphrase_options,
)
from docex.pki.credentials import UnitCredentials
from docex.pki.keys import load_certificate
from docex.pki.names import address_of, common_name
from docex.pki.trust import TrustStore
from docex.protocols import envelope as env
from docex.protocols.errors import DocexError
from docex.protocols.manifest import PRIORITIES, Manifest, new_message_id
from docex.protocols.package import extract_to


@click.group()
def envelope() -> None:
    """公文封包 Pack, inspect and open document envelopes."""


def _addresses(certs: list[str]) -> tuple[list[str], list[x509.Certificate]]:
    loaded = [load_certificate(p) for p in certs]
    addresses = []
    for path, cert in zip(certs, loaded, strict=True):
        address = address_of(cert)
        if address is None:
            raise DocexError("wrong_certificate_role", f"{path} is not a unit certificate")
        addresses.append(address)
    return addresses, loaded


@envelope.command()
@click.option("--from", "from_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Sender unit folder (from `docex pki issue`).")
@click.option("--to", "to_certs", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False), help="A recipient's enc.crt (主送); repeat.")
@click.option("--cc", "cc_certs", multiple=True, type=click.Path(exists=True, dir_okay=False), help="A copy recipient's enc.crt (抄送); repeat.")
@click.option("--title", required=True)
@click.option("--doc-number", required=True, help="发文字号, e.g. 阳办发〔2011〕42号.")
@click.option("--priority", type=click.Choice(PRIORITIES), default="平急", show_default=True)
@click.option("--classification", default="", help="密级 (秘密/机密/绝密 are refused on this network).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@json_option
@passphrase_options
@handles_errors
def pack(from_dir: str, to_certs: tuple[str, ...], cc_certs: tuple[str, ...], title: str, doc_number: str,
         priority: str, classification: str, output: str, files: tuple[str, ...], as_json: bool,
         passphrase: PassphraseSource) -> None:
    """封装公文 Seal FILES into one envelope for the given recipients."""
    sender = UnitCredentials.load(from_dir, passphrase.get())
    to, to_loaded = _addresses(list(to_certs))
    cc, cc_loaded = _addresses(list(cc_certs))
    manifest = Manifest(
        message_id=new_message_id(), sender=sender.address, recipients=tuple(to), cc=tuple(cc),
        title=title, doc_number=doc_number, priority=priority, classification=classification,
    )
    contents = {Path(f).name: Path(f).read_bytes() for f in files}
    main = next((n for n in contents if n.lower().endswith(".pdf")), None)
    data = env.pack(manifest, contents, sender, [*to_loaded, *cc_loaded], main_document=main)
    Path(output).write_bytes(data)
    if as_json:
        echo_json({"ok": True, "message_id": manifest.message_id, "size": len(data), "output": output})
        return
    click.echo(f"{manifest.message_id}  {len(data)} bytes -> {output}")


@envelope.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
@handles_errors
def inspect(path: str, as_json: bool) -> None:
    """查看封包路由信息 Show the routing header (no decryption, no verification)."""
    header = env.read_header(Path(path).read_bytes())
    if as_json:
        echo_json(header.to_dict())
        return
    for key, value in dataclasses.asdict(header).items():
        click.echo(f"{key:17} {', '.join(value) if isinstance(value, tuple) else value}")


@envelope.command("open")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--key-dir", required=True, type=click.Path(exists=True, file_okay=False), help="Recipient unit folder.")
@click.option("--ca", "cas", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False), help="Trusted CA certificate; repeat for several.")
@click.option("--crl", "crls", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Current CRL; repeat.")
@click.option("-d", "--dest", required=True, type=click.Path(file_okay=False))
@json_option
@passphrase_options
@handles_errors
def open_(path: str, key_dir: str, cas: tuple[str, ...], crls: tuple[str, ...], dest: str, as_json: bool,
          passphrase: PassphraseSource) -> None:
    """拆封核验 Verify every layer, decrypt, check every hash, write the files to DEST."""
    me = UnitCredentials.load(key_dir, passphrase.get())
    trust = TrustStore.from_files(cas, crls)
    opened = env.open_envelope(Path(path).read_bytes(), me, trust)
    target = Path(dest)
    if target.exists() and any(target.iterdir()):
        raise DocexError("unsafe_filename", f"{dest} exists and is not empty")
    if target.exists():
        target.rmdir()
    extract_to(target, opened.files, extra={"manifest.json": opened.manifest.to_json()})
    result = {
        "ok": True,
        "message_id": opened.header.message_id,
        "sender": opened.header.sender,
        "signer": common_name(opened.signer),
        "title": opened.manifest.title,
        "files": sorted(opened.files),
        "dest": str(target),
        "revocation_checked": bool(crls),
    }
    if as_json:
        echo_json(result)
    else:
        click.echo(f"verified: from {result['signer']} <{result['sender']}>, {opened.manifest.doc_number} {opened.manifest.title}")
        for name in result["files"]:
            click.echo(f"  {target / name}")
        if not crls:
            click.echo("注意：未提供 --crl，未检查证书吊销 (no --crl given: revocation not checked)")
