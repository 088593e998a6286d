from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from asn1crypto import tsp
from cryptography.hazmat.primitives import serialization

from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.pki.seal import apply_seal, verify_seals
from docex.pki.tsa import (
    REPLY_TYPE,
    TSA_POLICY_OID,
    TimeStampAuthority,
    TsaHttpServer,
    http_timestamper,
    response_status,
    serve,
)
from tests.conftest import Pki


@pytest.fixture(scope="module")
def tsa_server(seal_tsa: TimeStampAuthority) -> Iterator[TsaHttpServer]:
    server = serve(seal_tsa, "127.0.0.1", 0)
    yield server
    server.shutdown()
    server.server_close()


def _post(url: str, body: bytes, ctype: str = "application/timestamp-query") -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": ctype}, timeout=10)


def _request(digest: bytes, algorithm: str = "sha256", **extra: object) -> bytes:
    return bytes(
        tsp.TimeStampReq(
            {
                "version": 1,
                "message_imprint": {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": digest},
                "cert_req": True,
                **extra,
            }
        ).dump()
    )


def test_openssl_query_is_answered_and_openssl_verifies_the_token(
    tsa_server: TsaHttpServer, pki: Pki, tmp_path: Path
) -> None:
    data = tmp_path / "doc.txt"
    data.write_bytes("阳山县人民政府文件".encode())
    query = tmp_path / "req.tsq"
    subprocess.run(["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(query)], check=True)
    reply = _post(tsa_server.url, query.read_bytes())
    assert reply.status_code == 200 and reply.headers["Content-Type"] == REPLY_TYPE
    (tmp_path / "reply.tsr").write_bytes(reply.content)
    ca = tmp_path / "ca.crt"
    ca.write_bytes(pki.county.certificate.public_bytes(serialization.Encoding.PEM))
    verified = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(data), "-in", str(tmp_path / "reply.tsr"), "-CAfile", str(ca)],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr
    text = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(tmp_path / "reply.tsr"), "-text"], capture_output=True, text=True, check=True
    ).stdout
    assert TSA_POLICY_OID in text and "Status: Granted." in text


@pytest.mark.parametrize(
    ("body", "failure"),
    [
        (b"not asn.1 at all", "bad_data_format"),
        (_request(hashlib.sha1(b"x").digest(), "sha1"), "bad_alg"),
        (_request(b"short", "sha256"), "bad_data_format"),
        (_request(hashlib.sha256(b"x").digest(), req_policy="1.2.3.4"), "unaccepted_policy"),
    ],
)
def test_bad_requests_get_rfc3161_rejections(tsa_server: TsaHttpServer, body: bytes, failure: str) -> None:
    reply = _post(tsa_server.url, body)
    assert reply.status_code == 200
    status, failures, _text = response_status(reply.content)
    assert status == "rejection" and failure in failures


def test_http_errors_for_wrong_content_type_and_size(tsa_server: TsaHttpServer) -> None:
    assert _post(tsa_server.url, b"{}", "application/json").status_code == 415
    assert _post(tsa_server.url, b"\0" * 20000).status_code == 413
    assert requests.get(tsa_server.url + "health", timeout=10).text == "ok\n"


def test_in_process_token_carries_policy_nonce_and_signing_certificate(seal_tsa: TimeStampAuthority) -> None:
    req = tsp.TimeStampReq.load(_request(hashlib.sha256(b"x").digest(), nonce=424242))
    resp = seal_tsa.timestamp(req)
    assert resp["status"]["status"].native == "granted"
    signed = resp["time_stamp_token"]["content"]
    info = signed["encap_content_info"]["content"].parsed
    assert info["policy"].dotted == TSA_POLICY_OID and info["nonce"].native == 424242
    attrs = {a["type"].native for a in signed["signer_infos"][0]["signed_attrs"]}
    assert {"signing_certificate_v2", "message_digest", "content_type", "cms_algorithm_protection"} <= attrs
    assert len(signed["certificates"]) == 2  # TSA certificate and the county CA


def test_every_token_issued_is_in_the_ledger(seal_tsa: TimeStampAuthority) -> None:
    import json

    assert seal_tsa.ledger is not None
    before = seal_tsa.ledger.read_text().splitlines() if seal_tsa.ledger.exists() else []
    serials = []
    for n in range(3):
        digest = hashlib.sha256(b"doc %d" % n).digest()
        resp = seal_tsa.timestamp(tsp.TimeStampReq.load(_request(digest)))
        info = resp["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
        serials.append((format(info["serial_number"].native, "x"), digest.hex()))
    entries = [json.loads(line) for line in seal_tsa.ledger.read_text().splitlines()[len(before):]]
    assert [(e["serial"], e["imprint"]) for e in entries] == serials
    assert all(e["hash_algorithm"] == "sha256" and e["policy"] == TSA_POLICY_OID for e in entries)


def test_a_unit_certificate_cannot_run_a_tsa(seal_unit: UnitCredentials) -> None:
    with pytest.raises(PkiError) as err:
        TimeStampAuthority(seal_unit.sign_cert, seal_unit.sign_key)
    assert err.value.code == "wrong_certificate_role"


def test_agent_seals_with_the_tsa_over_http(
    tsa_server: TsaHttpServer, pki: Pki, seal_plain_pdf: bytes, seal_unit: UnitCredentials, seal_image_png: bytes
) -> None:
    sealed = apply_seal(
        seal_plain_pdf,
        cert=seal_unit.sign_cert,
        key=seal_unit.sign_key,
        image_png=seal_image_png,
        chain=[pki.county.certificate],
        crls=[pki.county.crl()],
        timestamper=http_timestamper(tsa_server.url),
    )
    report = verify_seals(sealed, [pki.county.certificate])
    assert report.ok, report.to_json()
    assert report.seals[0].time_source == "tsa" and report.seals[0].pades_level == "B-LTA"


def test_unreachable_tsa_is_a_named_error(pki: Pki, seal_plain_pdf: bytes, seal_unit: UnitCredentials, seal_image_png: bytes) -> None:
    with pytest.raises(PkiError) as err:
        apply_seal(
            seal_plain_pdf,
            cert=seal_unit.sign_cert,
            key=seal_unit.sign_key,
            image_png=seal_image_png,
            chain=[pki.county.certificate],
            timestamper=http_timestamper("http://127.0.0.1:9/", timeout=2),
        )
    assert err.value.code == "timestamp_unavailable"


def test_tokens_work_after_cms_was_used_first() -> None:
    """asn1crypto learns the name "tst_info" only when asn1crypto.tsp is imported; a
    process that used CMS before (an agent that received documents, then seals one) must
    still be able to build time-stamp tokens."""
    import subprocess
    import sys

    code = (
        "from asn1crypto import cms\n"
        "import docex.pki.cms\n"
        "cms.ContentType('signed_data')\n"
        "import docex.pki.tsa\n"
        "print(cms.ContentType('tst_info').dotted)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.2.840.113549.1.9.16.1.4"


def test_tsa_speaks_https_with_the_hubs_server_certificate_and_plain_http_only_on_localhost(
    seal_tsa: TimeStampAuthority, pki: Pki, tmp_path: Path, seal_plain_pdf: bytes, seal_unit: UnitCredentials,
    seal_image_png: bytes,
) -> None:
    from docex.pki.tsa import server_tls_context

    with pytest.raises(PkiError) as err:
        serve(seal_tsa, "0.0.0.0", 0)  # anywhere but localhost: TLS or nothing
    assert err.value.code == "tls_required"
    pki.county.issue_server("hub", tmp_path / "hub", None, ip_addresses=("127.0.0.1",))
    context = server_tls_context(str(tmp_path / "hub" / "server.crt"), str(tmp_path / "hub" / "server.key"))
    server = serve(seal_tsa, "127.0.0.1", 0, context)
    try:
        assert server.url.startswith("https://")
        with pytest.raises(requests.exceptions.SSLError):  # not a certificate the system trusts
            requests.get(server.url, timeout=10)
        ca_file = str(tmp_path / "hub" / "ca.crt")  # the information centre's CA, as agents hold it
        assert requests.get(server.url, timeout=10, verify=ca_file).status_code == 200
        sealed = apply_seal(seal_plain_pdf, cert=seal_unit.sign_cert, key=seal_unit.sign_key,
                            image_png=seal_image_png, chain=[pki.county.certificate], crls=[pki.county.crl()],
                            timestamper=http_timestamper(server.url, ca_file=ca_file))
        assert verify_seals(sealed, [pki.county.certificate]).seals[0].time_source == "tsa"
    finally:
        server.shutdown()
        server.server_close()
