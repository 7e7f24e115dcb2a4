"""How the sandbox kubelet "pulls" an image: find the digest the reference resolves to.

The kubelet picks credentials from the pod's ``imagePullSecrets`` with the kubelet's keyring
matching (:mod:`ocscan.registry.keyring`) and hands those for the image's registry to a
pluggable resolver, ``resolve_digest(image, credentials) -> digest | None``. The default,
:class:`RegistryResolver`, asks the registry for real (``HEAD /v2/<repo>/manifests/<ref>``,
basic or bearer auth). Failures carry containerd's wording, so the pod shows the same
``ErrImagePull`` message as on a real node.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import ssl
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import httpx

from ocscan.errors import InvalidReferenceError, MalformedSecretError, OcscanError
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.dockerconfig import entries_from_secret
from ocscan.registry.keyring import InvalidRegistryKeyError, Keyring
from ocscan.registry.reference import ImageReference, parse_reference

JsonObject = dict[str, object]
#: ``resolve_digest(image, credentials)``: the manifest digest (``sha256:...``), None if the
#: registry has no such image; raise :class:`ImagePullError` for any other failure.
ResolveDigest = Callable[[str, Sequence[RegistryCredential]], str | None]

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_PULL_SECRET_KEYS = {
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/dockercfg": ".dockercfg",
}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class ImagePullError(OcscanError):
    """An image cannot be pulled; ``message`` is the runtime's text, ``code`` its gRPC code."""

    def __init__(self, message: str, code: str = "Unknown") -> None:
        self.message = message
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class PulledImage:
    """What the container status shows: ``image`` as the runtime names it, and ``imageID``."""

    image: str
    image_id: str


def fake_digest(image: str) -> str:
    """A deterministic stand-in digest: sha256 of the normalised reference."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


class RegistryResolver:
    """Resolves a reference to its manifest digest by asking the registry, like containerd.

    ``verify`` is passed to httpx (a CA bundle path, an ``ssl.SSLContext`` or a bool).
    Loopback registries are tried over HTTPS first, then plain HTTP, as containerd does for
    localhost.
    """

    def __init__(self, verify: ssl.SSLContext | str | bool = True, timeout: float = 10.0) -> None:
        self._verify = verify
        self._timeout = timeout

    def __call__(self, image: str, credentials: Sequence[RegistryCredential]) -> str | None:
        reference = parse_reference(image)
        attempts: Sequence[RegistryCredential | None] = list(credentials) or [None]
        errors: list[ImagePullError] = []
        for credential in attempts:
            try:
                return self._resolve(reference, credential)
            except ImagePullError as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        joined = ", ".join(error.message for error in errors)
        raise ImagePullError(f"[{joined}]", errors[-1].code)

    def _resolve(
        self, reference: ImageReference, credential: RegistryCredential | None
    ) -> str | None:
        target = reference.digest or reference.tag or "latest"
        host = reference.registry
        with httpx.Client(verify=self._verify, timeout=self._timeout, trust_env=False) as client:
            try:
                return self._head(client, f"https://{host}", reference, target, credential)
            except (httpx.ConnectError, httpx.RemoteProtocolError) as error:
                if not _is_loopback(host):
                    raise ImagePullError(
                        f'failed to do request: Head "https://{host}/v2/{reference.repository}'
                        f'/manifests/{target}": {error}'
                    ) from None
            try:
                return self._head(client, f"http://{host}", reference, target, credential)
            except httpx.HTTPError as error:
                raise ImagePullError(
                    f'failed to do request: Head "http://{host}/v2/{reference.repository}'
                    f'/manifests/{target}": {error}'
                ) from None

    def _head(
        self,
        client: httpx.Client,
        base: str,
        reference: ImageReference,
        target: str,
        credential: RegistryCredential | None,
    ) -> str | None:
        url = f"{base}/v2/{reference.repository}/manifests/{target}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        response = client.head(url, headers=headers)
        if response.status_code == 401:
            authorization = self._authorize(client, response, reference, credential)
            if authorization is not None:
                response = client.head(url, headers=headers | {"Authorization": authorization})
        if response.status_code == 404:
            return None
        if response.status_code == 401 and "bearer" in _challenge(response)[0]:
            raise ImagePullError(
                "pull access denied, repository does not exist or may require authorization: "
                "server message: insufficient_scope: authorization failed"
            )
        if response.status_code != 200:
            raise ImagePullError(
                f"unexpected status from HEAD request to {url}: "
                f"{response.status_code} {response.reason_phrase}"
            )
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            body = client.get(url, headers=dict(response.request.headers)).content
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return reference.digest or digest

    def _authorize(
        self,
        client: httpx.Client,
        response: httpx.Response,
        reference: ImageReference,
        credential: RegistryCredential | None,
    ) -> str | None:
        """The Authorization header answering the registry's challenge, if one can."""
        scheme, params = _challenge(response)
        if scheme == "basic":
            return None if credential is None else _basic(credential)
        if scheme != "bearer" or "realm" not in params:
            return None
        query = {"scope": params.get("scope") or f"repository:{reference.repository}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        headers = {} if credential is None else {"Authorization": _basic(credential)}
        token_response = client.get(params["realm"], params=query, headers=headers)
        if token_response.status_code != 200:
            return None
        body = token_response.json()
        token = body.get("token") or body.get("access_token")
        return f"Bearer {token}" if token else None


def _challenge(response: httpx.Response) -> tuple[str, dict[str, str]]:
    header = response.headers.get("WWW-Authenticate", "")
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def _basic(credential: RegistryCredential) -> str:
    username, password = credential.reveal()
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def pull_credentials(
    image: ImageReference, secrets: Sequence[JsonObject]
) -> list[RegistryCredential]:
    """The credentials the kubelet would try for ``image``, from the pod's pull secrets.

    Secrets whose type and data key disagree are skipped, as the kubelet skips them; a
    pull secret that cannot be parsed fails the pull (:class:`ImagePullError`).
    """
    sources = []
    for secret in secrets:
        data = secret.get("data")
        key = _PULL_SECRET_KEYS.get(str(secret.get("type")))
        if key is None or not isinstance(data, dict) or not data.get(key):
            continue
        try:
            sources.append(("", entries_from_secret(secret)))
        except MalformedSecretError as error:
            raise ImagePullError(str(error)) from None
    try:
        matches = Keyring(sources).lookup(image)
    except InvalidRegistryKeyError as error:
        raise ImagePullError(str(error)) from None
    return [match.credential for match in matches]


@dataclass
class ImagePuller:
    """Resolves the images of pods to the digests they run.

    ``resolve_digest`` handles the registries in ``registries`` (host[:port]; None: all).
    Images on other registries fail to pull, unless ``fake_digests`` gives them a
    deterministic digest (:func:`fake_digest`) instead.
    """

    resolve_digest: ResolveDigest | None = field(default_factory=RegistryResolver)
    registries: Collection[str] | None = None
    fake_digests: bool = False

    def pull(self, image: str, pull_secrets: Sequence[JsonObject]) -> PulledImage:
        """The image as the runtime names it and its imageID; :class:`ImagePullError` if not."""
        try:
            reference = parse_reference(image)
        except InvalidReferenceError as error:
            raise ImagePullError(
                f'failed to pull and unpack image "{image}": {error.reason}', "InvalidArgument"
            ) from None
        shown = str(reference) if reference.tag or reference.digest else f"{reference}:latest"
        handled = self.registries is None or reference.registry in self.registries
        if self.resolve_digest is None or not handled:
            if not self.fake_digests:
                raise ImagePullError(
                    f'failed to pull and unpack image "{shown}": failed to resolve reference '
                    f'"{shown}": registry {reference.registry} is not served in the sandbox'
                )
            digest: str | None = reference.digest or fake_digest(shown)
        else:
            credentials = pull_credentials(reference, pull_secrets)
            try:
                digest = self.resolve_digest(shown, credentials)
            except ImagePullError as error:
                raise ImagePullError(
                    f'failed to pull and unpack image "{shown}": failed to resolve reference '
                    f'"{shown}": {error.message}',
                    error.code,
                ) from None
            if digest is None:
                raise ImagePullError(
                    f'failed to pull and unpack image "{shown}": failed to resolve reference '
                    f'"{shown}": {shown}: not found',
                    "NotFound",
                )
        return PulledImage(image=shown, image_id=f"{reference.name}@{digest}")
