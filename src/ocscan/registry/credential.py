"""The one type that carries a registry username and password.

Both fields are pydantic ``SecretStr``: ``repr``, ``str``, f-strings, logging, tracebacks and
``model_dump(mode="json")`` all show ``**********``. Only :meth:`RegistryCredential.reveal`
hands out the clear text, so every place that needs it is easy to find and review.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import BaseModel, ConfigDict, SecretStr

# Per-process key: identities are stable within a run (enough to deduplicate scan targets)
# but cannot be compared across runs or brute-forced from an output file.
_IDENTITY_KEY = secrets.token_bytes(32)


class RegistryCredential(BaseModel):
    """A username and password for one registry. Redacts itself everywhere."""

    model_config = ConfigDict(frozen=True)

    username: SecretStr
    password: SecretStr

    @classmethod
    def of(cls, username: str, password: str) -> RegistryCredential:
        return cls(username=SecretStr(username), password=SecretStr(password))

    @property
    def is_anonymous(self) -> bool:
        """An entry with neither username nor password: the pull goes without credentials."""
        return not self.username.get_secret_value() and not self.password.get_secret_value()

    def reveal(self) -> tuple[str, str]:
        """The clear-text ``(username, password)``: only for handing to a registry client."""
        return self.username.get_secret_value(), self.password.get_secret_value()

    @property
    def identity(self) -> str:
        """A short, per-process keyed digest that tells credentials apart without showing them."""
        user, password = self.reveal()
        mac = hmac.new(_IDENTITY_KEY, f"{user}\0{password}".encode(), hashlib.sha256)
        return mac.hexdigest()[:16]

    def __repr__(self) -> str:
        return "RegistryCredential(username='**********', password='**********')"

    __str__ = __repr__
