"""Hub notices: signed by the hub's own server certificate for its own prefix."""

from __future__ import annotations

import pytest

from docex.pki.credentials import UnitCredentials
from docex.pki.errors import PkiError
from docex.protocols.notice import make_notice, verify_notice
from docex.protocols.statement import sign_statement
from tests.conftest import Pki
from tests.protocols.conftest import A, B, Hub


def test_notice_round_trip(county_hub: Hub, pki: Pki) -> None:
    notice, der = make_notice(message_id="0b6c1f2e-9d7a-4e3b-8c5d-1a2b3c4d5e60", event="rejected", code="classified", message="涉密公文不得在本网传输",
                              recipients=(B,), hub=county_hub.prefix, cert=county_hub.cert, key=county_hub.key)
    assert verify_notice(der, pki.trust()) == notice


def test_notice_from_another_hub_than_named(other_hub: Hub, pki: Pki) -> None:
    _, der = make_notice(message_id="0b6c1f2e-9d7a-4e3b-8c5d-1a2b3c4d5e60", event="paper_route", code="paper_route", message="纸质送达",
                         recipients=(), hub="qingyuan.yangshan", cert=other_hub.cert, key=other_hub.key)
    with pytest.raises(PkiError) as exc:
        verify_notice(der, pki.trust())
    assert exc.value.code == "sender_mismatch"


def test_units_cannot_issue_notices(a: UnitCredentials, pki: Pki) -> None:
    payload = {"message_id": "m", "event": "rejected", "code": "x", "message": "x", "recipients": [],
               "hub": A, "at": "x"}
    with pytest.raises(PkiError) as exc:
        verify_notice(sign_statement("notice", payload, a.sign_cert, a.sign_key), pki.trust())
    assert exc.value.code == "wrong_certificate_role"


def test_incomplete_notice(county_hub: Hub, pki: Pki) -> None:
    der = sign_statement("notice", {"message_id": "m"}, county_hub.cert, county_hub.key)
    with pytest.raises(PkiError) as exc:
        verify_notice(der, pki.trust())
    assert exc.value.code == "malformed_envelope"
