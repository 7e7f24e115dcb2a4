"""Request bodies in the Kubernetes protobuf encoding, decoded to their JSON form.

kubectl's typed clients (``kubectl create secret``, ``create configmap``, ``auth can-i``...)
send ``application/vnd.kubernetes.protobuf`` bodies and never fall back to JSON. This module
reads the wire format for the kinds those commands send; the field numbers are those of the
Kubernetes ``generated.proto`` files. Other kinds answer 415, as a server without protobuf
support for them would.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.jsondata import JsonObject

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"
_ZERO_TIME_SECONDS = -62135596800  # Go's zero time.Time, sent for an unset timestamp

# Message -> field number -> (JSON name, type). A type is a scalar ("string", "bytes",
# "bool", "int", "time"), "map" / "bytesmap" (map<string, string|bytes>), another message's
# name, or any of those in brackets for a repeated field.
_Fields = dict[int, tuple[str, str]]
_MESSAGES: dict[str, _Fields] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"),
                3: ("contentEncoding", "string"), 4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
        5: ("uid", "string"), 6: ("resourceVersion", "string"), 7: ("generation", "int"),
        8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", "map"),
        12: ("annotations", "map"), 13: ("ownerReferences", "[OwnerReference]"),
        14: ("finalizers", "[string]"),
    },
    "OwnerReference": {5: ("apiVersion", "string"), 1: ("kind", "string"),
                       3: ("name", "string"), 4: ("uid", "string"),
                       6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")},
    "LabelSelector": {1: ("matchLabels", "map"),
                      2: ("matchExpressions", "[LabelSelectorRequirement]")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"),
                                 3: ("values", "[string]")},
    # core/v1
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "bytesmap"), 3: ("type", "string"),
               4: ("stringData", "map"), 5: ("immutable", "bool")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map"),
                  3: ("binaryData", "bytesmap"), 4: ("immutable", "bool")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "[string]")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[ObjectReference]"),
                       3: ("imagePullSecrets", "[LocalObjectReference]"),
                       4: ("automountServiceAccountToken", "bool")},
    "ObjectReference": {1: ("kind", "string"), 2: ("namespace", "string"),
                        3: ("name", "string"), 4: ("uid", "string"),
                        5: ("apiVersion", "string"), 6: ("resourceVersion", "string"),
                        7: ("fieldPath", "string")},
    "LocalObjectReference": {1: ("name", "string")},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]"),
                    3: ("aggregationRule", "AggregationRule")},
    "AggregationRule": {1: ("clusterRoleSelectors", "[LabelSelector]")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject]"),
                    3: ("roleRef", "RoleRef")},
    "PolicyRule": {1: ("verbs", "[string]"), 2: ("apiGroups", "[string]"),
                   3: ("resources", "[string]"), 4: ("resourceNames", "[string]"),
                   5: ("nonResourceURLs", "[string]")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"),
                4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    # authorization.k8s.io/v1
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"),
                                2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"),
                           3: ("group", "string"), 4: ("version", "string"),
                           5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
}  # fmt: skip

_ROOTS = {
    ("v1", "Secret"): "Secret",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Namespace"): "Namespace",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "RoleBinding",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
}


def decode(body: bytes) -> JsonObject:
    """The JSON form of a protobuf-encoded object; 400 when malformed, 415 for a kind this
    emulator cannot read in protobuf."""
    if not body.startswith(_MAGIC):
        raise ApiError.bad_request("protobuf body does not start with the Kubernetes magic")
    try:
        envelope = _message(body[len(_MAGIC) :], "Unknown")
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as error:
        raise ApiError.bad_request(f"malformed protobuf body: {error}") from None
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    root = _ROOTS.get((api_version, kind))
    if root is None:
        raise ApiError.unsupported_media_type(MEDIA_TYPE, ["application/json", "application/yaml"])
    try:
        obj = _message(base64.b64decode(envelope.get("raw", "")), root)
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as error:
        raise ApiError.bad_request(f"malformed protobuf {kind}: {error}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of each field in ``data``."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = struct.unpack_from("<q", data, pos)[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack_from("<i", data, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _message(data: bytes, name: str) -> JsonObject:
    table = _MESSAGES[name]
    out: JsonObject = {}
    for number, _, value in _fields(data):
        if number not in table:
            continue  # a field this table does not know; as an older server would
        key, kind = table[number]
        repeated = kind.startswith("[")
        kind = kind.strip("[]")
        if kind in ("map", "bytesmap"):
            entry = dict((n, v) for n, _, v in _fields(_bytes(value)))
            text = _bytes(entry.get(1, b"")).decode()
            raw = _bytes(entry.get(2, b""))
            out.setdefault(key, {})[text] = (
                base64.b64encode(raw).decode() if kind == "bytesmap" else raw.decode()
            )
            continue
        decoded = _scalar(value, kind)
        if decoded is None or (decoded in ("", 0, False) and not repeated):
            continue  # Go's zero values: the JSON form omits them
        if repeated:
            out.setdefault(key, []).append(decoded)
        else:
            out[key] = decoded
    return out


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def _scalar(value: int | bytes, kind: str) -> Any:
    if kind == "string":
        return _bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(_bytes(value)).decode()
    if kind == "bool":
        return bool(value)
    if kind == "int":
        number = int(value) if isinstance(value, int) else 0
        return number - (1 << 64) if number >= 1 << 63 else number
    if kind == "time":
        stamp = _message(_bytes(value), "Time")
        seconds = int(stamp.get("seconds", 0))
        if not stamp or seconds <= _ZERO_TIME_SECONDS:
            return None  # an unset (zero) time
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _message(_bytes(value), kind)
