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
