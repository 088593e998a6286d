"""Named PKI failures. Every refusal carries a stable code that the envelope, the hub and
the CLI show unchanged, plus a one-line message a person understands."""

from __future__ import annotations


class PkiError(Exception):
    """A verification or key-handling failure with a stable `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class UnknownIssuer(PkiError):
    """certificate_untrusted because the chain ends at an issuer none of our anchors is:
    a CA we do not know (yet). Only this kind can be cured by learning an anchor later;
    a chain too long or a signer missing from the message cannot."""

    def __init__(self, message: str) -> None:
        super().__init__("certificate_untrusted", message)
