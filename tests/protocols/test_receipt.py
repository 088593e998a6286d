"""Receipts: signed by the recipient unit or one of its staff, over the envelope's digest."""

from __future__ import annotations

import pytest

from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.protocols.receipt import envelope_digest, make_receipt, verify_receipt
from docex.protocols.statement import sign_statement
from tests.conftest import Pki
from tests.protocols.conftest import B

DIGEST = envelope_digest(b"the envelope as received")


def test_delivered_receipt_round_trip(b: UnitCredentials, pki: Pki) -> None:
    receipt, der = make_receipt(message_id="0b6c1f2e-9d7a-4e3b-8c5d-1a2b3c4d5e61", recipient=B, event="delivered", envelope_sha256=DIGEST,
                                cert=b.sign_cert, key=b.sign_key)
    verified, signer = verify_receipt(der, pki.trust())
    assert verified == receipt and signer == b.sign_cert
    assert verified.envelope_sha256 == DIGEST and len(DIGEST) == 64


def test_signed_for_by_a_person_and_returned_with_reason(pki: Pki) -> None:
    clerk = pki.person(B, "王秘书")
    receipt, der = make_receipt(message_id="0b6c1f2e-9d7a-4e3b-8c5d-1a2b3c4d5e62", recipient=B, event="returned", envelope_sha256=DIGEST,
                                cert=clerk.cert, key=clerk.key, reason="非本单位业务", person="王秘书")
    verified, signer = verify_receipt(der, pki.trust())
    assert (verified.event, verified.reason, verified.person) == ("returned", "非本单位业务", "王秘书")
    assert signer == clerk.cert


@pytest.mark.parametrize(("event", "reason"), [("returned", ""), ("lost", "")])
def test_invalid_receipts_are_not_made(event: str, reason: str, b: UnitCredentials) -> None:
    with pytest.raises(PkiError) as exc:
        make_receipt(message_id="0b6c1f2e-9d7a-4e3b-8c5d-1a2b3c4d5e60", recipient=B, event=event, envelope_sha256=DIGEST, cert=b.sign_cert,
                     key=b.sign_key, reason=reason)
    assert exc.value.code == "receipt_invalid"


def test_receipt_signed_by_another_unit(c: UnitCredentials, pki: Pki) -> None:
    _, der = make_receipt(message_id="0b6c1f2e-9d7a-4e3b-8c5d-1a2b3c4d5e60", recipient=B, event="delivered", envelope_sha256=DIGEST,
                          cert=c.sign_cert, key=c.sign_key)
    with pytest.raises(PkiError) as exc:
        verify_receipt(der, pki.trust())
    assert exc.value.code == "sender_mismatch"


def test_other_statements_are_not_receipts(b: UnitCredentials, pki: Pki) -> None:
    payload = {"message_id": "m", "recipient": B, "event": "delivered", "envelope_sha256": DIGEST, "at": "x"}
    with pytest.raises(PkiError) as exc:
        verify_receipt(sign_statement("notice", payload, b.sign_cert, b.sign_key), pki.trust())
    assert exc.value.code == "receipt_invalid"
    with pytest.raises(PkiError) as exc:
        verify_receipt(sign_statement("receipt", {**payload, "colour": "red"}, b.sign_cert, b.sign_key), pki.trust())
    assert exc.value.code == "receipt_invalid"
    with pytest.raises(PkiError) as exc:  # the encryption key does not sign receipts
        verify_receipt(sign_statement("receipt", payload, b.enc_cert, b.enc_key), pki.trust())
    assert exc.value.code == "wrong_certificate_role"


def test_tampered_or_untrusted_receipt(b: UnitCredentials, pki: Pki) -> None:
    _, der = make_receipt(message_id="0b6c1f2e-9d7a-4e3b-8c5d-1a2b3c4d5e60", recipient=B, event="signed_for", envelope_sha256=DIGEST,
                          cert=b.sign_cert, key=b.sign_key)
    changed = der.replace(b"signed_for", b"signed_fox")
    with pytest.raises(PkiError) as exc:
        verify_receipt(changed, pki.trust())
    assert exc.value.code == "signature_invalid"
    with pytest.raises(PkiError) as exc:
        verify_receipt(der[:-10], pki.trust())
    assert exc.value.code == "malformed_envelope"
