"""Who a request comes from: bearer tokens mapped to users and service accounts."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from ocscan.sandbox.kube.errors import ApiError

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class Identity:
    """An authenticated user and their groups."""

    user: str
    groups: tuple[str, ...] = ()

    @property
    def is_master(self) -> bool:
        """Members of ``system:masters`` bypass authorization, as in Kubernetes."""
        return MASTERS in self.groups


ANONYMOUS = Identity("system:anonymous", ("system:unauthenticated",))
ADMIN = Identity("kubernetes-admin", (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str) -> str:
    """``system:serviceaccount:<namespace>:<name>``."""
    return f"system:serviceaccount:{namespace}:{name}"


class TokenAuthenticator:
    """Bearer token -> :class:`Identity`; a request without a token is anonymous."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Identity] = {}
        self.admin_token = self.issue(ADMIN)

    def issue(self, identity: Identity, token: str | None = None) -> str:
        """Register ``token`` (a fresh random one when None) for ``identity``; returns it."""
        token = token or secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = identity
        return token

    def issue_user(self, user: str, groups: tuple[str, ...] = ()) -> str:
        """A token for ``user`` (authenticated, in ``groups``)."""
        return self.issue(Identity(user, (*groups, AUTHENTICATED)))

    def issue_service_account(self, namespace: str, name: str) -> str:
        """A token for the ServiceAccount ``namespace/name``."""
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)
        return self.issue(Identity(service_account_user(namespace, name), groups))

    def authenticate(self, authorization: str | None) -> Identity:
        """The identity behind an ``Authorization`` header; an unknown token is a 401."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            identity = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if identity is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return identity
