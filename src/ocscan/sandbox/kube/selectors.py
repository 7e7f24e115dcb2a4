"""Label and field selectors, parsed from their query-string form and matched against objects.

Label selectors support ``=``, ``==``, ``!=``, ``in``, ``notin``, ``key`` (exists) and ``!key``
(does not exist); :func:`selector_from_object` converts a ``metav1.LabelSelector``
(``matchLabels``/``matchExpressions``). Field selectors support ``=``, ``==`` and ``!=`` on the
fields each resource type allows, as the real API server does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.resources import ResourceType


@dataclass(frozen=True)
class Requirement:
    """One label requirement: ``operator`` is one of = != in notin exists !exists."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        # != and notin also match objects without the label, as in Kubernetes.
        return not present or value not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of label requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether an object with ``labels`` is selected."""
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_KEY = r"(?:[A-Za-z0-9.\-]+/)?[A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(rf"^{_KEY}$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\((.*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(\S*)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _check_key(key: str, selector: str) -> str:
    if not _KEY_RE.match(key) or len(key.rpartition("/")[2]) > 63:
        raise ApiError.bad_request(
            f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}"
        )
    return key


def _check_value(value: str, selector: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise ApiError.bad_request(
            f"unable to parse requirement: invalid label value {value!r} in selector {selector!r}"
        )
    return value


def parse_label_selector(selector: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter; a malformed one is a 400."""
    if not selector or not selector.strip():
        return LabelSelector()
    requirements: list[Requirement] = []
    for raw in _split_top_level(selector):
        part = raw.strip()
        if not part:
            raise ApiError.bad_request(f"unable to parse requirement: empty in {selector!r}")
        if match := _SET_RE.match(part):
            key, operator = match.group(1), match.group(3)
            values = [v.strip() for v in match.group(4).split(",") if v.strip()]
            if not values:
                raise ApiError.bad_request(
                    f"unable to parse requirement: for 'in', 'notin' operators, values set "
                    f"can't be empty in {selector!r}"
                )
            requirements.append(
                Requirement(
                    _check_key(key, selector),
                    operator,
                    frozenset(_check_value(v, selector) for v in values),
                )
            )
        elif match := _EQ_RE.match(part):
            key, operator, value = match.groups()
            operator = "=" if operator in ("=", "==") else "!="
            requirements.append(
                Requirement(
                    _check_key(key, selector), operator, frozenset({_check_value(value, selector)})
                )
            )
        elif part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), selector), "!exists"))
        else:
            requirements.append(Requirement(_check_key(part, selector), "exists"))
    return LabelSelector(tuple(requirements))


def selector_from_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` (``matchLabels``, ``matchExpressions``).

    None selects nothing in Kubernetes workloads, but an empty selector selects everything;
    callers that need "nothing" handle None themselves. This returns the empty selector.
    """
    if not selector:
        return LabelSelector()
    requirements = [
        Requirement(key, "=", frozenset({str(value)}))
        for key, value in (selector.get("matchLabels") or {}).items()
    ]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expression in selector.get("matchExpressions") or []:
        operator = operators.get(expression.get("operator", ""))
        if operator is None:
            raise ApiError.bad_request(
                f"{expression.get('operator')!r} is not a valid label selector operator"
            )
        requirements.append(
            Requirement(expression["key"], operator, frozenset(expression.get("values") or []))
        )
    return LabelSelector(tuple(requirements))


# Field selectors --------------------------------------------------------------------------

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
_FIELDS_BY_KIND: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "Job": ("status.successful",),
    "ReplicaSet": ("status.replicas",),
    "ReplicationController": ("status.replicas",),
}


@dataclass(frozen=True)
class FieldRequirement:
    """``field`` equals (or, with ``negate``, differs from) ``value``."""

    field: str
    value: str
    negate: bool = False


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements; the empty selector matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is selected."""
        for requirement in self.requirements:
            actual = field_value(obj, requirement.field)
            if (actual == requirement.value) == requirement.negate:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a selectable field (missing fields read as ``""``)."""
    if path == "source":  # events: the reporting component
        return str((obj.get("source") or {}).get("component", ""))
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def parse_field_selector(selector: str | None, rtype: ResourceType) -> FieldSelector:
    """Parse the ``fieldSelector`` query parameter for ``rtype``; unknown fields are a 400."""
    if not selector or not selector.strip():
        return FieldSelector()
    allowed = _COMMON_FIELDS + _FIELDS_BY_KIND.get(rtype.kind, ())
    requirements = []
    for raw in selector.split(","):
        part = raw.strip()
        for operator in ("!=", "==", "="):
            if operator in part:
                name, _, value = part.partition(operator)
                break
        else:
            raise ApiError.bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        name = name.strip()
        if name not in allowed and not rtype.is_custom:
            raise ApiError.bad_request(f"field label not supported: {name}")
        if rtype.is_custom and name not in _COMMON_FIELDS:
            raise ApiError.bad_request(f"field label not supported: {name}")
        requirements.append(FieldRequirement(name, value.strip(), negate=operator == "!="))
    return FieldSelector(tuple(requirements))
