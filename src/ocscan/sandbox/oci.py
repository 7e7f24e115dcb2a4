"""Alpine-like OCI images built from a package list, multi-platform indexes of them, and a
registry push over HTTP(S).

The image has one layer with just what Trivy reads to detect Alpine and its packages
(``/etc/os-release``, ``/etc/alpine-release``, ``/etc/apk/repositories``,
``/lib/apk/db/installed``). Every byte is deterministic, so equal inputs give equal digests.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import ssl
import tarfile
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict

from ocscan.registry.credential import RegistryCredential
from ocscan.registry.platform import Platform
from ocscan.sandbox.errors import RegistryRequestError, SandboxError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_EPOCH = 1_700_000_000  # fixed mtime (2023-11-14) for reproducible layers
_CREATED = "2023-11-14T22:13:20Z"
LINUX_AMD64 = Platform("linux", "amd64")
LINUX_ARM64 = Platform("linux", "arm64")


class ApkPackage(BaseModel):
    """One installed apk package; ``origin`` is its source package (defaults to ``name``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    origin: str | None = None
    arch: str = "x86_64"

    @property
    def source(self) -> str:
        return self.origin or self.name

    def stanza(self) -> str:
        """This package's entry in ``/lib/apk/db/installed``."""
        checksum = hashlib.sha1(f"{self.name}-{self.version}".encode()).digest()  # noqa: S324
        return (
            f"C:Q1{base64.b64encode(checksum).decode()}\n"
            f"P:{self.name}\nV:{self.version}\nA:{self.arch}\n"
            f"S:1024\nI:4096\nT:{self.name} (ocscan sandbox)\nU:https://alpinelinux.org\n"
            f"L:MIT\no:{self.source}\nt:{_EPOCH}\n"
        )


@dataclass(frozen=True)
class Blob:
    """Content-addressed bytes: a layer, a config or a manifest."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class OciImage:
    """A single-platform OCI image: manifest, config and layers."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        """The manifest digest, ``sha256:...``: what a pod's ``imageID`` names."""
        return self.manifest.digest


@dataclass(frozen=True)
class OciIndex:
    """A multi-platform image: an index of single-platform images, one per platform."""

    manifest: Blob
    images: tuple[OciImage, ...]

    @property
    def digest(self) -> str:
        """The index digest: what a pod's ``imageID`` names when pulled by tag."""
        return self.manifest.digest


def build_index(images: Mapping[Platform, OciImage]) -> OciIndex:
    """An OCI index pointing at ``images``, each under its platform."""
    manifests = []
    for platform, image in images.items():
        entry: dict[str, Any] = {"os": platform.os, "architecture": platform.architecture}
        if platform.variant:
            entry["variant"] = platform.variant
        manifests.append(image.manifest.descriptor() | {"platform": entry})
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return OciIndex(manifest=Blob(OCI_INDEX, _json(document)), images=tuple(images.values()))


def _tar(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    directories = sorted(
        {str(parent) for path in files for parent in Path(path).parents if str(parent) != "."}
    )
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _EPOCH
            tar.addfile(info)
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(files[path]), 0o644, _EPOCH
            tar.addfile(info, io.BytesIO(files[path]))
    return buffer.getvalue()


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def alpine_files(packages: Sequence[ApkPackage], alpine_version: str) -> dict[str, bytes]:
    """The files Trivy reads to identify an Alpine image and its installed packages."""
    major_minor = ".".join(alpine_version.split(".")[:2])
    os_release = (
        'NAME="Alpine Linux"\nID=alpine\n'
        f"VERSION_ID={alpine_version}\n"
        f'PRETTY_NAME="Alpine Linux v{major_minor}"\n'
        'HOME_URL="https://alpinelinux.org/"\n'
    )
    repositories = (
        f"https://dl-cdn.alpinelinux.org/alpine/v{major_minor}/main\n"
        f"https://dl-cdn.alpinelinux.org/alpine/v{major_minor}/community\n"
    )
    installed = "\n".join(package.stanza() for package in packages)
    return {
        "etc/os-release": os_release.encode(),
        "etc/alpine-release": f"{alpine_version}\n".encode(),
        "etc/apk/repositories": repositories.encode(),
        "lib/apk/db/installed": installed.encode(),
    }


def build_alpine_image(
    packages: Sequence[ApkPackage],
    *,
    alpine_version: str = "3.19.1",
    extra_files: Mapping[str, bytes] | None = None,
    platform: Platform = LINUX_AMD64,
) -> OciImage:
    """An Alpine-like image with ``packages`` installed, for ``platform``; ``extra_files``
    (path -> content) are added to the layer, e.g. to make two images with the same packages
    differ."""
    files = alpine_files(packages, alpine_version)
    for path, content in (extra_files or {}).items():
        files[path.lstrip("/")] = content
    layer_tar = _tar(files)
    layer = Blob(OCI_LAYER_GZIP, gzip.compress(layer_tar, compresslevel=6, mtime=0))
    config = Blob(
        OCI_CONFIG,
        _json(
            {
                "architecture": platform.architecture,
                "os": platform.os,
                **({"variant": platform.variant} if platform.variant else {}),
                "created": _CREATED,
                "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()],
                },
                "history": [{"created": _CREATED, "created_by": "ocscan sandbox"}],
            }
        ),
    )
    manifest = Blob(
        OCI_MANIFEST,
        _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    return OciImage(manifest=manifest, config=config, layers=(layer,))


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for part in _split_params(rest):
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return scheme.lower(), params


def _split_params(text: str) -> list[str]:
    """Split ``a="x,y", b=z`` on commas outside quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return parts


class RegistryAuth(httpx.Auth):
    """Answers a registry's ``WWW-Authenticate`` challenge: Basic, or Bearer via its token
    service. Sends nothing until challenged, and nothing at all without a credential.

    A token service that refuses raises :class:`RegistryRequestError` in its own words.
    """

    def __init__(self, credential: RegistryCredential | None) -> None:
        self._credential = credential
        self._header: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._header is not None:
            request.headers["Authorization"] = self._header
        response = yield request
        if response.status_code != 401 or self._credential is None:
            return
        scheme, params = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        user, password = self._credential.reveal()
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme == "basic":
            self._header = basic
        elif scheme == "bearer" and "realm" in params:
            query: dict[str, str] = {k: params[k] for k in ("service", "scope") if k in params}
            token_request = httpx.Request(
                "GET", params["realm"], params=query, headers={"Authorization": basic}
            )
            token_response = yield token_request
            token_response.read()
            if token_response.status_code != 200:
                raise RegistryRequestError(
                    f"token request to {params['realm']}",
                    token_response.status_code,
                    registry_message(token_response),
                )
            body = token_response.json()
            self._header = "Bearer " + str(body.get("token") or body.get("access_token"))
        else:
            return
        request.headers["Authorization"] = self._header
        yield request


def registry_message(response: httpx.Response) -> str:
    """The registry's own words for an error response (its ``errors`` list, else the body)."""
    try:
        errors = response.json().get("errors") or []
        if errors:
            return "; ".join(f"{error.get('code')}: {error.get('message')}" for error in errors)
    except (ValueError, AttributeError):
        pass
    return response.text.strip()[:500] or response.reason_phrase


def _with_digest(location: str, base_url: str, digest: str) -> httpx.URL:
    # The Location may be relative and already carries the upload state in its query.
    return httpx.URL(base_url).join(location).copy_merge_params({"digest": digest})


class _Pusher:
    """The HTTP calls of one push: blobs (monolithic POST + PUT), then the manifest."""

    def __init__(self, base: str, repository: str, tag: str) -> None:
        self.base = base
        self.repository = repository
        self.tag = tag
        self.target = f"{urlsplit(base).netloc}/{repository}:{tag}"

    def check(self, response: httpx.Response, action: str, expected: int) -> httpx.Response:
        if response.status_code != expected:
            raise RegistryRequestError(
                f"{action} for {self.target}", response.status_code, registry_message(response)
            )
        return response

    def push(self, client: httpx.Client, image: OciImage | OciIndex) -> httpx.Response:
        if isinstance(image, OciIndex):  # its images by digest first, as the registry wants
            for child in image.images:
                self.push_blobs(client, child)
                self.put_manifest(client, child.digest, child.manifest)
        else:
            self.push_blobs(client, image)
        return self.put_manifest(client, self.tag, image.manifest)

    def push_blobs(self, client: httpx.Client, image: OciImage) -> None:
        v2 = f"{self.base}/v2/{self.repository}"
        for blob in (*image.layers, image.config):
            if client.head(f"{v2}/blobs/{blob.digest}").status_code == 200:
                continue  # already there
            started = self.check(client.post(f"{v2}/blobs/uploads/"), "blob upload start", 202)
            location = started.headers.get("Location")
            if not location:
                raise SandboxError(f"registry {self.base} started an upload without a Location")
            uploaded = client.put(
                _with_digest(location, self.base, blob.digest),
                content=blob.data,
                headers={"Content-Type": "application/octet-stream"},
            )
            self.check(uploaded, f"blob upload {blob.digest}", 201)

    def put_manifest(self, client: httpx.Client, reference: str, manifest: Blob) -> httpx.Response:
        uploaded = client.put(
            f"{self.base}/v2/{self.repository}/manifests/{reference}",
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        return self.check(uploaded, f"manifest upload {reference}", 201)


def push_image(
    image: OciImage | OciIndex,
    registry_url: str,
    repository: str,
    tag: str,
    *,
    credential: RegistryCredential | None = None,
    ca_file: Path | None = None,
    timeout: float = 30.0,
) -> str:
    """Push ``image`` (an index with all its images) as ``repository:tag`` to the registry at
    ``registry_url`` (``http(s)://host:port``); return the digest the registry confirms.

    Raises :class:`RegistryRequestError` with the registry's message when it refuses.
    """
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
    )
    pusher = _Pusher(registry_url.rstrip("/"), repository, tag)
    try:
        with httpx.Client(
            auth=RegistryAuth(credential), verify=verify, timeout=timeout, trust_env=False
        ) as client:
            pushed = pusher.push(client, image)
    except httpx.TransportError as error:
        raise SandboxError(f"cannot push {pusher.target}: {error}") from None
    digest = str(pushed.headers.get("Docker-Content-Digest", image.digest))
    if digest != image.digest:
        raise SandboxError(f"registry stored {pusher.target} as {digest}, expected {image.digest}")
    return digest
