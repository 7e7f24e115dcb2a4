"""Which pull secrets a pod uses and which of their credentials apply to one image.

Pure functions over the objects as the Kubernetes API returns them (plain mappings); the
caller fetches the secrets by name.

* Secrets come from ``pod.spec.imagePullSecrets``, in order. Only when the pod lists none
  are the service account's ``imagePullSecrets`` used (what the ServiceAccount admission
  plugin does; it never merges the two lists).
* Empty names are skipped, as the kubelet does. A name listed twice is consulted once (the
  kubelet would offer the same credentials twice in a row, which adds nothing).
* A missing secret is skipped and reported in :attr:`PullCredentials.missing`, like the
  kubelet skips it with a warning.
* A secret that cannot be used (wrong type or data key, malformed document) is reported
  in :attr:`PullCredentials.invalid` with the reason and contributes nothing. The kubelet
  skips a secret whose type and key disagree and refuses the whole pull for a malformed
  document; ocscan reports both and still returns the matches of the valid secrets, so
  callers must surface ``invalid`` (see :attr:`PullCredentials.complete`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ocscan.errors import MalformedSecretError
from ocscan.registry.dockerconfig import DockerConfigEntry, entries_from_secret
from ocscan.registry.keyring import CredentialMatch, Keyring
from ocscan.registry.reference import ImageReference

PullSecretOrigin = Literal["pod", "serviceaccount", "none"]


class InvalidSecret(BaseModel):
    """A pull secret that was found but cannot be used, and why."""

    model_config = ConfigDict(frozen=True)

    name: str
    reason: str


class PullCredentials(BaseModel):
    """The credentials the kubelet would try for one image, and what was left out."""

    model_config = ConfigDict(frozen=True)

    matches: tuple[CredentialMatch, ...]
    """Credentials for this image's registry only, in the order they are to be tried."""
    missing: tuple[str, ...]
    """Secret names that were listed but not found."""
    invalid: tuple[InvalidSecret, ...]
    """Secrets that were found but cannot be used, with the reason."""
    tried: tuple[str, ...]
    """Every secret name consulted, in order."""

    @property
    def complete(self) -> bool:
        """Whether every listed secret was found and usable."""
        return not self.missing and not self.invalid


def pull_secret_names(
    pod_spec: Mapping[str, Any], service_account: Mapping[str, Any] | None
) -> tuple[list[str], PullSecretOrigin]:
    """The pull secret names to consult for a pod, and where they come from.

    ``pod_spec`` is the pod's ``spec``; ``service_account`` the ServiceAccount object, or
    ``None`` when it is unknown or absent.
    """
    listed = pod_spec.get("imagePullSecrets") or []
    if listed:
        return _names(listed), "pod"
    if service_account is not None:
        listed = service_account.get("imagePullSecrets") or []
        if listed:
            return _names(listed), "serviceaccount"
    return [], "none"


class PullSecretSet:
    """A pod's pull secrets, decoded once, to look up the credentials of any of its images.

    ``secrets`` maps a name to the Secret as the API returns it, or to ``None`` (or no
    entry) when it does not exist.
    """

    def __init__(
        self,
        secret_names: Sequence[str],
        secrets: Mapping[str, Mapping[str, Any] | None],
        namespace: str,
    ) -> None:
        sources: list[tuple[str, list[DockerConfigEntry]]] = []
        missing: list[str] = []
        invalid: list[InvalidSecret] = []
        tried: list[str] = []
        for name in secret_names:
            if not name or name in tried:
                continue
            tried.append(name)
            secret = secrets.get(name)
            if secret is None:
                missing.append(name)
                continue
            source = f"{namespace}/{name}"
            try:
                sources.append((source, entries_from_secret(secret, source=source)))
            except MalformedSecretError as exc:
                invalid.append(InvalidSecret(name=name, reason=exc.reason))
        self._keyring = Keyring(sources)
        self._missing = tuple(missing)
        self._invalid = tuple(invalid)
        self._tried = tuple(tried)

    def credentials_for(self, image: ImageReference | str) -> PullCredentials:
        """The credentials that apply to ``image``, in try order. A string ``image`` is
        parsed and may raise :class:`~ocscan.errors.InvalidReferenceError`."""
        return PullCredentials(
            matches=tuple(self._keyring.lookup(image)),
            missing=self._missing,
            invalid=self._invalid,
            tried=self._tried,
        )


def resolve_pull_credentials(
    image: ImageReference | str,
    secret_names: Sequence[str],
    secrets: Mapping[str, Mapping[str, Any] | None],
    namespace: str,
) -> PullCredentials:
    """The credentials from ``secret_names`` that apply to ``image``, in try order.

    ``secrets`` maps a name to the Secret as the API returns it, or to ``None`` (or no
    entry) when it does not exist. A string ``image`` is parsed and may raise
    :class:`~ocscan.errors.InvalidReferenceError`. For many images of the same pods, build
    one :class:`PullSecretSet` instead.
    """
    return PullSecretSet(secret_names, secrets, namespace).credentials_for(image)


def _names(listed: Any) -> list[str]:
    names: list[str] = []
    for reference in listed if isinstance(listed, list) else []:
        name = reference.get("name") if isinstance(reference, Mapping) else None
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names
