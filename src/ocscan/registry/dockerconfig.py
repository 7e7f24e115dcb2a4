"""Docker config documents and image pull secrets, decoded like the kubelet decodes them.

Two formats: ``kubernetes.io/dockerconfigjson`` (data key ``.dockerconfigjson``, a
``{"auths": {KEY: ENTRY}}`` document as in ``~/.docker/config.json``) and the legacy
``kubernetes.io/dockercfg`` (data key ``.dockercfg``, the bare ``{KEY: ENTRY}`` map).

An entry's non-empty ``auth`` (base64 of ``username:password``, padded or not, split on
the first colon) wins over its ``username``/``password``; ``email``, ``identitytoken`` and
``registrytoken`` are ignored, as in the kubelet. An entry without any credential yields
an empty username and password (the kubelet then pulls anonymously).

Deliberate differences from the kubelet, all of them louder: a secret whose type and data
key disagree, that is empty, or whose document has no ``"auths"`` object is reported with
a reason instead of being skipped silently; an entry the kubelet would drop (an unusable
key) or accept by accident (``null`` instead of an object, a key given twice, a
dockerconfigjson document under ``.dockercfg``) fails the whole document. Every error
names the secret or file and the reason and never quotes a credential.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ocscan.errors import MalformedSecretError
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.keyring import InvalidRegistryKeyError, describe_key, parse_registry_key

DockerConfigKind = Literal["dockerconfigjson", "dockercfg"]

DOCKER_CONFIG_JSON_TYPE = "kubernetes.io/dockerconfigjson"
DOCKERCFG_TYPE = "kubernetes.io/dockercfg"
_SECRET_FORMATS: dict[str, tuple[str, DockerConfigKind]] = {
    DOCKER_CONFIG_JSON_TYPE: (".dockerconfigjson", "dockerconfigjson"),
    DOCKERCFG_TYPE: (".dockercfg", "dockercfg"),
}
_CREDENTIAL_FIELDS = ("auth", "username", "password", "email")
_PADDED_RE = re.compile(r"[A-Za-z0-9+/]*={1,2}")
_UNPADDED_RE = re.compile(r"[A-Za-z0-9+/]*")


class DockerConfigEntry(BaseModel):
    """One registry key of a docker config document and its credential."""

    model_config = ConfigDict(frozen=True)

    key: str
    """The registry key exactly as written in the document."""
    credential: RegistryCredential


def parse_docker_config(
    data: bytes | str | Mapping[str, Any],
    *,
    source: str,
    kind: DockerConfigKind | None = None,
) -> list[DockerConfigEntry]:
    """The entries of a docker config document, in document order.

    ``data`` is the JSON text or an already decoded object. ``kind=None`` detects the
    format: an object with an ``"auths"`` object is dockerconfigjson, anything else a bare
    dockercfg map. Raises :class:`MalformedSecretError` naming ``source``.
    """
    document = data if isinstance(data, Mapping) else _load_json(data, source)
    if not isinstance(document, Mapping):
        raise MalformedSecretError(source, "the document is not a JSON object")
    auths = document.get("auths")
    if kind is None:
        kind = "dockerconfigjson" if isinstance(auths, Mapping) else "dockercfg"
    if kind == "dockerconfigjson":
        if "auths" not in document:
            raise MalformedSecretError(source, 'the document has no "auths" object')
        if not isinstance(auths, Mapping):
            raise MalformedSecretError(source, '"auths" is not an object')
        entries: Mapping[Any, Any] = auths
    else:
        if isinstance(auths, Mapping):
            raise MalformedSecretError(
                source,
                'a dockercfg map holds a dockerconfigjson document ({"auths": ...}); '
                f"use type {DOCKER_CONFIG_JSON_TYPE}",
            )
        entries = document
    return [_entry(source, key, value) for key, value in entries.items()]


def entries_from_secret(
    secret: Mapping[str, Any], *, source: str | None = None
) -> list[DockerConfigEntry]:
    """The entries of an image pull secret, given as the API returns it (``data`` in base64).

    The secret counts only when its type and data key agree (``kubernetes.io/
    dockerconfigjson`` with ``.dockerconfigjson``, ``kubernetes.io/dockercfg`` with
    ``.dockercfg``). ``source`` defaults to ``namespace/name`` from its metadata. Raises
    :class:`MalformedSecretError` naming the secret and the reason.
    """
    if source is None:
        metadata = secret.get("metadata") or {}
        source = f"{metadata.get('namespace') or '?'}/{metadata.get('name') or '?'}"
    secret_type = secret.get("type")
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise MalformedSecretError(source, "data is not an object")
    if secret_type not in _SECRET_FORMATS:
        raise MalformedSecretError(
            source,
            f"type {secret_type!r} is not an image pull secret type "
            f"({DOCKER_CONFIG_JSON_TYPE} or {DOCKERCFG_TYPE})",
        )
    data_key, kind = _SECRET_FORMATS[secret_type]
    encoded = data.get(data_key)
    if encoded is None:
        present = ", ".join(sorted(str(name) for name in data)) or "none"
        raise MalformedSecretError(
            source, f"type {secret_type} needs data key {data_key} (data keys: {present})"
        )
    if not isinstance(encoded, str):
        raise MalformedSecretError(source, f"data key {data_key} is not a base64 string")
    if not encoded:
        raise MalformedSecretError(source, f"data key {data_key} is empty")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        failure = f"data key {data_key} is not valid base64"
    else:
        return parse_docker_config(raw, source=source, kind=kind)
    raise MalformedSecretError(source, failure)  # outside `except`: no chained context


class _Rejected(Exception):
    """A JSON construct the document must not contain; carries no document content."""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Rejected(f"the key {describe_key(key)} appears twice in one object")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not valid JSON")


def _load_json(data: bytes | str, source: str) -> Any:
    """Decode JSON text; errors say where and why, never what (they would quote secrets)."""
    text, failure = _as_text(data)
    if failure is None:
        try:
            return json.loads(
                text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
            )
        except json.JSONDecodeError as exc:
            failure = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        except _Rejected as exc:
            failure = str(exc)
        except RecursionError:
            failure = "the document is nested too deeply"
    raise MalformedSecretError(source, failure)  # outside `except`: no chained context


def _as_text(data: bytes | str) -> tuple[str, str | None]:
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            return "", f"the document is not UTF-8 text (invalid byte at offset {exc.start})"
    if not text.strip():
        return "", "the document is empty"
    return text, None


def _entry(source: str, key: Any, value: Any) -> DockerConfigEntry:
    if not isinstance(key, str):
        raise MalformedSecretError(source, "a registry key is not a string")
    try:
        parse_registry_key(key)
    except InvalidRegistryKeyError as exc:
        failure: str | None = f"registry key {describe_key(key)}: {exc.reason}"
    else:
        failure = None
    if failure is not None:
        raise MalformedSecretError(source, failure)
    where = f"entry {describe_key(key)}"
    if not isinstance(value, Mapping):
        raise MalformedSecretError(source, f"{where} is not an object")
    for field in _CREDENTIAL_FIELDS:
        if value.get(field) is not None and not isinstance(value[field], str):
            raise MalformedSecretError(source, f"{where}: {field} is not a string")
    auth = value.get("auth") or ""
    if auth:
        username, password = _decode_auth(source, where, auth)
    else:
        username, password = value.get("username") or "", value.get("password") or ""
    return DockerConfigEntry(key=key, credential=RegistryCredential.of(username, password))


def _decode_auth(source: str, where: str, auth: str) -> tuple[str, str]:
    """Split ``base64(username:password)``; padded and unpadded base64 both decode."""
    text = auth.replace("\r", "").replace("\n", "")  # Go's decoder skips line breaks
    if auth.strip().endswith("="):
        valid = _PADDED_RE.fullmatch(text) is not None and len(text) % 4 == 0
    else:
        valid = _UNPADDED_RE.fullmatch(text) is not None and len(text) % 4 != 1
        text += "=" * (-len(text) % 4)
    if not valid:
        raise MalformedSecretError(source, f"{where}: auth is not valid base64")
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        failure = f"{where}: auth does not decode to UTF-8 text"
    else:
        username, colon, password = decoded.partition(":")
        if colon:
            return username, password
        failure = f"{where}: auth must be base64 of username:password"
    raise MalformedSecretError(source, failure)  # outside `except`: no chained context
