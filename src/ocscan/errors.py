"""The exceptions ocscan raises. Catch :class:`OcscanError` to catch them all.

Messages name the object and the reason; none of them ever carries a credential.
"""

from __future__ import annotations


class OcscanError(Exception):
    """Base class of every error ocscan raises on purpose."""


class InvalidReferenceError(OcscanError, ValueError):
    """An image reference is not valid under the distribution grammar."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid image reference {reference!r}: {reason}")


class CredentialError(OcscanError):
    """Registry credentials could not be read or used."""


class MalformedSecretError(CredentialError):
    """A pull secret or docker config document cannot be parsed.

    ``source`` names the secret (``namespace/name``) or file; ``reason`` says what is
    wrong without quoting any of the document's content.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"malformed pull secret {source}: {reason}")
