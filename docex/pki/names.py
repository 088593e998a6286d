"""How a docex identity is written into a certificate.

A unit's certificates carry its name (UTF-8) as the subject CN, its address as the subject
OU and, authoritatively, as a SAN URI ``urn:docex:unit:<address>``. A person's certificate
carries ``urn:docex:person:<address>`` (the unit the person works for) and the person's
name as CN. Each certificate's role is a certificate-policy OID under docex's arc, so that
a verifier can tell a unit seal certificate (机构证书) from a personal one (个人证书)."""

from __future__ import annotations

import enum
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

# Private arc for docex policies and attributes (documented in the README).
DOCEX_ARC = "1.3.6.1.4.1.61020.1"


class CertRole(enum.Enum):
    CA = "ca"
    SEAL = "seal"  # unit seal / signing certificate (机构证书)
    ENCRYPTION = "encryption"  # unit encryption certificate (keyEncipherment only)
    PERSON = "person"  # staff certificate (个人证书)
    SERVER = "server"  # hub / bridge server certificate
    TSA = "tsa"  # the information centre's time-stamping authority
    CLIENT = "client"  # a terminal's (or bridge's) TLS login to the broker (终端证书)

    @property
    def policy_oid(self) -> x509.ObjectIdentifier:
        index = list(CertRole).index(self) + 1
        return x509.ObjectIdentifier(f"{DOCEX_ARC}.1.{index}")


_ADDRESS_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}(\.[a-z][a-z0-9-]{0,31}){0,7}$")


def is_valid_address(address: str) -> bool:
    """Addresses are dotted lowercase labels, read left to right like domain names."""
    return bool(_ADDRESS_RE.match(address))


def unit_uri(address: str) -> str:
    return f"urn:docex:unit:{address}"


def person_uri(address: str) -> str:
    return f"urn:docex:person:{address}"


def unit_subject(address: str, name: str, *, country: str = "CN") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, address),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode()


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def address_of(cert: x509.Certificate) -> str | None:
    """The unit address a certificate speaks for (unit or person), or None."""
    for uri in _uris(cert):
        for prefix in ("urn:docex:unit:", "urn:docex:person:"):
            if uri.startswith(prefix):
                return uri[len(prefix) :]
    return None


def role_of(cert: x509.Certificate) -> CertRole | None:
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        policies = None
    if policies is not None:
        by_oid = {role.policy_oid: role for role in CertRole}
        for policy in policies:
            if policy.policy_identifier in by_oid:
                return by_oid[policy.policy_identifier]
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return CertRole.CA
    except x509.ExtensionNotFound:
        pass
    return None


def link_uri(name: str) -> str:
    return f"urn:docex:link:{name}"


def hub_uri(prefix: str) -> str:
    return f"urn:docex:hub:{prefix}"


def hub_prefix_of(cert: x509.Certificate) -> str | None:
    """The prefix a hub certificate speaks for, or None."""
    for uri in _uris(cert):
        if uri.startswith("urn:docex:hub:"):
            return uri[len("urn:docex:hub:") :]
    return None
