"""Validation of objects before they are stored, with the API server's field-path messages.

Three steps, in the API server's order:

* unknown fields are dropped, or, with ``fieldValidation=Strict``, rejected (400, "strict
  decoding error: unknown field ..."), and a ``MicroTime`` without its six fractional digits
  is a 400, as decoding into the Go types does;
* the object is checked against the Kubernetes OpenAPI schema shipped by
  ``kubernetes-validate`` (or a CRD's ``openAPIV3Schema``);
* a few semantic rules the schema cannot express (names, labels, pod containers need an
  image, workload selectors must match their template, docker config secrets, an Event's
  namespace must match its involved object's, a Lease's duration is positive...).

A failed check is a list of causes ``(reason, field, message)`` for a 422 Invalid.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError as SchemaError

from ocscan.kube.quantity import QuantityError, parse_quantity
from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.resources import ResourceType
from ocscan.sandbox.kube.schemas import KubernetesSchemas
from ocscan.sandbox.kube.selectors import selector_from_object

Cause = tuple[str, str, str]
_REDACTED = '"<secret contents redacted>"'

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(f"^{_SUBDOMAIN}$")
_LABEL_RE = re.compile(f"^{_LABEL}$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Resources whose names are DNS labels rather than subdomains.
_LABEL_NAMED = {r.NAMESPACES.key, r.SERVICES.key}
# Resources whose names only need to be valid path segments.
_PATH_NAMED = {r.ROLES.key, r.ROLE_BINDINGS.key, r.CLUSTER_ROLES.key, r.CLUSTER_ROLE_BINDINGS.key}
_WORKLOADS = {r.DEPLOYMENTS.key, r.REPLICA_SETS.key, r.STATEFUL_SETS.key, r.DAEMON_SETS.key}


def path_string(parts: Iterable[str | int]) -> str:
    """``spec.containers[0].image`` from ``["spec", "containers", 0, "image"]``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _subdomain_message(value: str) -> str:
    return (
        f'Invalid value: "{value}": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        f"'{_SUBDOMAIN}')"
    )


def _label_message(value: str) -> str:
    return (
        f'Invalid value: "{value}": a lowercase RFC 1123 label must consist of lower case '
        "alphanumeric characters or '-', and must start and end with an alphanumeric "
        "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        f"'{_LABEL}')"
    )


def check_metadata(rtype: ResourceType, obj: JsonObject) -> list[Cause]:
    """Name, label and annotation rules of ``metadata``."""
    meta = obj.get("metadata") or {}
    causes: list[Cause] = []
    name = str(meta.get("name", ""))
    if rtype.key in _PATH_NAMED:
        if "/" in name or "%" in name or name in (".", ".."):
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f"Invalid value: \"{name}\": may not contain '/' or '%'",
                )
            )
    elif rtype.key in _LABEL_NAMED:
        if len(name) > 63 or not _LABEL_RE.match(name):
            causes.append(("FieldValueInvalid", "metadata.name", _label_message(name)))
    elif len(name) > 253 or not _SUBDOMAIN_RE.match(name):
        causes.append(("FieldValueInvalid", "metadata.name", _subdomain_message(name)))
    for key, value in (meta.get("labels") or {}).items():
        field = "metadata.labels"
        if not _valid_qualified_name(str(key)):
            causes.append(
                (
                    "FieldValueInvalid",
                    field,
                    f'Invalid value: "{key}": name part '
                    "must consist of alphanumeric characters, '-', '_' or '.', and must "
                    "start and end with an alphanumeric character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE_RE.match(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    field,
                    f'Invalid value: "{value}": a valid '
                    "label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
    for key in meta.get("annotations") or {}:
        if not _valid_qualified_name(str(key)):
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.annotations",
                    f'Invalid value: "{key}": name part must consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
    return causes


def _valid_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN_RE.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME_RE.match(name))


class SchemaValidator:
    """Checks objects against the Kubernetes OpenAPI schema of one version (``"1.32"``).

    Validators are compiled once per kind and kept; validation of a typical object takes well
    under a millisecond after the first of its kind.
    """

    def __init__(self, version: str) -> None:
        self.schemas = KubernetesSchemas(version)
        self._validators: dict[tuple[str, bool], jsonschema.protocols.Validator] = {}
        self._lock = threading.Lock()

    def validate(self, rtype: ResourceType, obj: JsonObject, strict: bool = False) -> list[Cause]:
        """Drop (or with ``strict``, reject) unknown fields, then list the schema violations.

        Unknown fields under ``strict`` raise a 400 BadRequest, as strict decoding does.
        """
        decoded = prune_unknown_fields(self, rtype, obj)
        if decoded.errors:
            raise ApiError.bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                f"{rtype.kind}: {decoded.errors[0]}"
            )
        unknown = decoded.unknown
        if unknown and strict:
            fields = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise ApiError.bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                f"{rtype.kind}: strict decoding error: {fields}"
            )
        validator = self._validator(rtype)
        causes = [] if validator is None else [_cause(e) for e in _leaf_errors(validator, obj)]
        return causes + semantic_causes(rtype, obj)

    def _validator(self, rtype: ResourceType) -> jsonschema.protocols.Validator | None:
        if rtype.is_custom:
            key = (f"{rtype.group}/{rtype.version}/{rtype.plural}", False)
            schema = _custom_schema(rtype.schema or {})
        else:
            name = self.schemas.definition_name(rtype)
            if name is None:
                return None
            key = (name, False)
            schema = {"$defs": self.schemas.definitions(), "$ref": f"#/$defs/{name}"}
        with self._lock:
            validator = self._validators.get(key)
            if validator is None or rtype.is_custom:
                validator = jsonschema.Draft202012Validator(schema)
                self._validators[key] = validator
            return validator


def _custom_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's OpenAPI v3 schema as JSON Schema: ``nullable`` becomes a null type, and the
    object envelope fields the API server owns are not the CRD's to constrain."""

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: convert(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("nullable") and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        out.pop("nullable", None)
        return out

    converted: dict[str, Any] = convert(schema)
    properties = dict(converted.get("properties") or {})
    for envelope in ("apiVersion", "kind", "metadata"):
        properties.pop(envelope, None)
    converted["properties"] = properties
    return converted


def _leaf_errors(validator: jsonschema.protocols.Validator, obj: JsonObject) -> list[SchemaError]:
    """The most specific errors: a oneOf/anyOf failure reports its best branch's cause."""
    errors = []
    for error in validator.iter_errors(obj):
        best = jsonschema.exceptions.best_match([error])
        if best.validator == "required" and list(best.absolute_path)[:1] == ["status"]:
            continue  # the API server fills missing status fields with Go zero values
        errors.append(best)
    errors.sort(key=lambda e: path_string(e.absolute_path))
    return errors


def _cause(error: SchemaError) -> Cause:
    path = list(error.absolute_path)
    field = path_string(path)
    if error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        name = missing.group(1) if missing else ""
        return ("FieldValueRequired", path_string([*path, name]), "Required value")
    shown = json.dumps(error.instance) if not isinstance(error.instance, dict | list) else "object"
    if error.validator == "enum":
        supported = ", ".join(
            json.dumps(v) for v in _as_list(error.validator_value) if v is not None
        )
        return (
            "FieldValueNotSupported",
            field,
            f"Unsupported value: {shown}: supported values: {supported}",
        )
    if error.validator == "type":
        wanted = error.validator_value
        if isinstance(wanted, list):
            wanted = " or ".join(w for w in wanted if w != "null")
        actual = json.dumps(_json_type(error.instance))
        return (
            "FieldValueTypeInvalid",
            field,
            f"Invalid value: {shown}: {field or 'body'} in body must be of type {wanted}: {actual}",
        )
    return ("FieldValueInvalid", field, f"Invalid value: {shown}: {error.message}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# Decoding: unknown fields, MicroTimes -------------------------------------------------------

_RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"


@dataclasses.dataclass
class Decoded:
    """What decoding into the Go types found: dropped unknown fields (their paths) and
    values that do not decode (Go's error), as the API server's decoder does."""

    unknown: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def micro_time_error(value: str) -> str | None:
    """Go's ``time.Parse`` error for a ``metav1.MicroTime`` that is not RFC 3339 with exactly
    six fractional digits (whole seconds do not decode), else None."""
    prefix = f'parsing time "{value}" as "{_RFC3339_MICRO}": cannot parse '
    if not re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", value):
        return prefix + f'"{value}" as "2006"'
    fraction = value[19:]
    if not re.match(r"\.\d{6}", fraction):
        return prefix + f'"{fraction}" as ".000000"'
    zone = fraction[7:]
    if not re.fullmatch(r"Z|[+-]\d{2}:\d{2}", zone):
        return prefix + f'"{zone}" as "Z07:00"'
    return None


def _quantity_error(value: str) -> str | None:
    try:
        parse_quantity(value)
    except QuantityError as error:
        return str(error)
    return None


# Go types whose JSON decoding checks a string's form: their ``$ref`` -> the error, if any.
_STRING_DECODERS = {
    "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": micro_time_error,
    "#/$defs/io.k8s.apimachinery.pkg.api.resource.Quantity": _quantity_error,
}


def prune_unknown_fields(
    validator: SchemaValidator, rtype: ResourceType, obj: JsonObject
) -> Decoded:
    """Remove fields the schema does not know (their paths are ``unknown``) and check the
    values whose Go types decode them strictly."""
    decoded = Decoded()
    schemas = validator.schemas
    if rtype.is_custom:
        root: dict[str, Any] | None = dict(rtype.schema or {})
        properties = dict((root or {}).get("properties") or {})
        for envelope in ("apiVersion", "kind", "metadata"):
            properties[envelope] = {"x-kubernetes-preserve-unknown-fields": True}
        root = dict(root or {}, properties=properties)
        _prune(schemas, root, obj, [], decoded, custom=True)
        meta_name = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        if isinstance(obj.get("metadata"), dict):
            meta_schema = schemas.definitions().get(meta_name)
            _prune(schemas, meta_schema, obj["metadata"], ["metadata"], decoded, custom=False)
    else:
        name = schemas.definition_name(rtype)
        if name is not None:
            _prune(schemas, schemas.definitions()[name], obj, [], decoded, custom=False)
    return decoded


def _prune(
    schemas: KubernetesSchemas,
    schema: dict[str, Any] | None,
    value: Any,
    path: list[str | int],
    decoded: Decoded,
    *,
    custom: bool,
) -> None:
    decoder = _STRING_DECODERS.get(schema.get("$ref", "")) if schema and not custom else None
    if decoder is not None:
        if isinstance(value, str) and (error := decoder(value)):
            decoded.errors.append(error)
        return
    schema = schema if custom else schemas.resolve(schema)
    if not schema or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        if properties is None and not isinstance(additional, dict):
            return  # free-form object (RawExtension, JSON)
        for key in list(value):
            if properties is not None and key in properties:
                _prune(schemas, properties[key], value[key], [*path, key], decoded, custom=custom)
            elif isinstance(additional, dict):
                _prune(schemas, additional, value[key], [*path, key], decoded, custom=custom)
            else:
                decoded.unknown.append(path_string([*path, key]))
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _prune(schemas, schema["items"], item, [*path, index], decoded, custom=custom)


# Semantic rules -----------------------------------------------------------------------------


def semantic_causes(rtype: ResourceType, obj: JsonObject) -> list[Cause]:
    """Rules beyond the schema that clients of this project depend on."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if rtype == r.PODS and spec is not None:
        return _pod_spec_causes(spec, ["spec"])
    if rtype.key in _WORKLOADS and spec is not None:
        return _workload_causes(spec)
    if rtype == r.JOBS and spec is not None:
        causes = _template_causes(spec, ["spec"])
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("OnFailure", "Never"):
            causes.append(
                (
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                )
            )
        return causes
    if rtype == r.SECRETS:
        return _secret_causes(obj)
    if rtype == r.EVENTS:
        return _event_causes(obj)
    if rtype == r.LEASES and spec is not None:
        return _lease_causes(spec)
    return []


def _pod_spec_causes(spec: dict[str, Any], path: Sequence[str | int]) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("FieldValueRequired", path_string([*path, "containers"]), "Required value"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            if not isinstance(container, dict):
                continue
            where = [*path, group, index]
            if not container.get("image"):
                causes.append(
                    ("FieldValueRequired", path_string([*where, "image"]), "Required value")
                )
            name = container.get("name")
            if name in seen:
                causes.append(
                    (
                        "FieldValueDuplicate",
                        path_string([*where, "name"]),
                        f'Duplicate value: "{name}"',
                    )
                )
            seen.add(str(name))
            causes.extend(_resources_causes(container.get("resources"), [*where, "resources"]))
    return causes


def _resources_causes(resources: Any, path: Sequence[str | int]) -> list[Cause]:
    """``ValidateResourceRequirements``: no negative quantity, no request above its limit."""
    if not isinstance(resources, dict):
        return []
    causes: list[Cause] = []
    values: dict[str, dict[str, tuple[str, Any]]] = {}
    for group in ("limits", "requests"):
        for name, text in (resources.get(group) or {}).items():
            try:
                quantity = parse_quantity(str(text))
            except QuantityError:
                continue  # a decoding error, reported before validation
            values.setdefault(group, {})[name] = (str(text), quantity)
            if quantity < 0:
                causes.append(
                    (
                        "FieldValueInvalid",
                        path_string([*path, group]) + f"[{name}]",
                        f'Invalid value: "{text}": must be greater than or equal to 0',
                    )
                )
    limits = values.get("limits", {})
    for name, (text, quantity) in values.get("requests", {}).items():
        if name in limits and quantity > limits[name][1]:
            causes.append(
                (
                    "FieldValueInvalid",
                    path_string([*path, "requests"]),
                    f'Invalid value: "{text}": must be less than or equal to {name} limit '
                    f"of {limits[name][0]}",
                )
            )
    return causes


def _template_causes(spec: dict[str, Any], path: list[str | int]) -> list[Cause]:
    template_spec = (spec.get("template") or {}).get("spec")
    if not isinstance(template_spec, dict):
        return [("FieldValueRequired", path_string([*path, "template", "spec"]), "Required value")]
    return _pod_spec_causes(template_spec, [*path, "template", "spec"])


def _workload_causes(spec: dict[str, Any]) -> list[Cause]:
    causes = _template_causes(spec, ["spec"])
    selector = spec.get("selector")
    if not selector:
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        return causes
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    try:
        matched = selector_from_object(selector).matches(labels)
    except ApiError:
        matched = False
    if not matched:
        shown = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
        causes.append(
            (
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                f"Invalid value: map[string]string{{{shown}}}: `selector` does not "
                "match template `labels`",
            )
        )
    return causes


def _secret_causes(obj: JsonObject) -> list[Cause]:
    causes: list[Cause] = []
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"data[{key}]",
                    f"Invalid value: {_REDACTED}: illegal base64 data",
                )
            )
    required = {
        "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
        "kubernetes.io/dockercfg": ".dockercfg",
    }.get(str(obj.get("type", "")))
    if required and not causes:
        if required not in data:
            causes.append(("FieldValueRequired", f"data[{required}]", "Required value"))
        else:
            try:
                json.loads(base64.b64decode(data[required]))
            except ValueError as error:
                # The real message quotes the decoder's reason, never the secret's content.
                reason = str(error).split(":")[0]
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"data[{required}]",
                        f"Invalid value: {_REDACTED}: {reason}",
                    )
                )
    return causes


def _event_causes(obj: JsonObject) -> list[Cause]:
    """The core/v1 rules (``legacyValidateEvent``): ``involvedObject.namespace`` against the
    Event's namespace and, for a "new" Event (with ``eventTime``), its reporting fields."""
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    involved = str((obj.get("involvedObject") or {}).get("namespace") or "")
    if obj.get("eventTime"):
        # A "new" Event is only checked for an empty one, allowed from default and kube-system.
        matches = bool(involved) or namespace in ("default", "kube-system")
    elif involved:
        matches = involved == namespace
    else:
        # A cluster-scoped object: its Events go to "default", for old clients.
        matches = namespace in ("", "default")
    causes: list[Cause] = []
    if not matches:
        causes.append(
            (
                "FieldValueInvalid",
                "involvedObject.namespace",
                f'Invalid value: "{involved}": does not match event.namespace',
            )
        )
    if obj.get("eventTime"):
        causes.extend(_new_event_causes(obj))
    return causes


# Limits of pkg/apis/core/validation/events.go.
_EVENT_LIMITS = (("reportingInstance", 128), ("action", 128), ("reason", 128), ("message", 1024))


def _new_event_causes(obj: JsonObject) -> list[Cause]:
    """An Event with ``eventTime`` needs its reporting controller (a qualified name),
    instance, action and reason, each within its length limit."""
    causes: list[Cause] = []
    controller = str(obj.get("reportingComponent") or "")
    if not controller:
        causes.append(("FieldValueRequired", "reportingController", "Required value"))
    elif not _valid_qualified_name(controller):
        causes.append(
            (
                "FieldValueInvalid",
                "reportingController",
                f'Invalid value: "{controller}": name part must consist of alphanumeric '
                "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character",
            )
        )
    for name, limit in _EVENT_LIMITS:
        value = str(obj.get(name) or "")
        if not value and name != "message":
            causes.append(("FieldValueRequired", name, "Required value"))
        elif len(value) > limit:
            message = f'Invalid value: "": can have at most {limit} characters'
            causes.append(("FieldValueInvalid", name, message))
    return causes


def _lease_causes(spec: dict[str, Any]) -> list[Cause]:
    """``ValidateLeaseSpec``: a positive duration, no negative transition count."""
    causes: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.leaseDurationSeconds",
                f"Invalid value: {duration}: must be greater than 0",
            )
        )
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.leaseTransitions",
                f"Invalid value: {transitions}: must be greater than or equal to 0",
            )
        )
    return causes
