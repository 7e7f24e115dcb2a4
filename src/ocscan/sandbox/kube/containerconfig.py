"""What the kubelet computes before it starts a container: env, volumes, mounts, quantities.

Environment: ``envFrom`` then ``env`` in order, with ``value`` (``$(VAR)`` expanded against
the variables defined before it), ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef`` and
``resourceFieldRef``; a missing Secret or key raises :class:`ConfigError` with the kubelet's
own message (``secret "x" not found``), which the pod shows as ``CreateContainerConfigError``.

Volumes (``secret``, ``configMap``, ``emptyDir``, ``downwardAPI``, ``projected``) are written
as files under a per-pod directory (with ``items`` and ``defaultMode``/``mode``). A process
cannot mount them, so mounts are *materialised*: every ``volumeMounts[].mountPath`` (and the
``terminationMessagePath``) maps to a host path, and a :class:`MountTable` rewrites the
literal strings of the pod spec (``command``, ``args``, ``workingDir``, env ``value``) where
they name a path under a mount point. Values that come from Secrets, ConfigMaps or fields are
never rewritten. A program that finds a mounted path on its own (a built-in default) does not
see the mount: pass paths explicitly.
"""

from __future__ import annotations

import base64
import math
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import Any

from ocscan.errors import OcscanError

JsonObject = dict[str, Any]
#: Reads one object: ``lookup("secrets" | "configmaps", namespace, name)``, None if absent.
ObjectLookup = Callable[[str, str, str], JsonObject | None]
#: Mints a service-account token: ``(namespace, service_account, audience, seconds)``.
TokenSource = Callable[[str, str, str, int], str]

DEFAULT_FILE_MODE = 0o644
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


class ConfigError(OcscanError):
    """A container's configuration cannot be built yet (``CreateContainerConfigError``)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class MountError(OcscanError):
    """A volume cannot be set up yet (the pod stays ``ContainerCreating``)."""

    def __init__(self, volume: str, reason: str) -> None:
        self.volume = volume
        self.message = f'MountVolume.SetUp failed for volume "{volume}" : {reason}'
        super().__init__(self.message)


# --- quantities -------------------------------------------------------------------------

_SUFFIXES = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


def parse_quantity(value: str | int | float) -> Decimal:
    """The value of a Kubernetes quantity (``64Mi``, ``500m``, ``1e3``)."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    number, exponent, suffix = match.groups()
    try:
        if exponent:
            return Decimal(number + exponent)
        return Decimal(number) * _SUFFIXES[suffix or ""]
    except InvalidOperation as error:
        raise ValueError(f"invalid quantity {value!r}") from error


def memory_limit_bytes(container: JsonObject) -> int | None:
    """``resources.limits.memory`` in bytes, if set."""
    limit = (container.get("resources") or {}).get("limits", {}).get("memory")
    return None if limit is None else math.ceil(parse_quantity(limit))


# --- $(VAR) expansion -------------------------------------------------------------------


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes a ``$``.

    Unknown references and incomplete ones stay as written, exactly as the kubelet does.
    """
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            advance = 1
            if nxt == "$":
                out.append("$")
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close < 0:
                    out.append("$(")
                else:
                    name = text[cursor + 2 : close]
                    out.append(variables.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


# --- environment ------------------------------------------------------------------------


def _decoded(data: Mapping[str, str] | None) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (data or {}).items()}


def secret_data(secret: JsonObject) -> dict[str, bytes]:
    """A Secret's ``data`` decoded (``stringData`` is merged into ``data`` by the API)."""
    data = _decoded(secret.get("data"))
    for key, value in (secret.get("stringData") or {}).items():
        data[key] = value.encode()
    return data


def configmap_data(configmap: JsonObject) -> dict[str, bytes]:
    """A ConfigMap's ``data`` and ``binaryData`` as bytes."""
    data = {key: value.encode() for key, value in (configmap.get("data") or {}).items()}
    data.update(_decoded(configmap.get("binaryData")))
    return data


def field_value(pod: JsonObject, path: str) -> str:
    """The value of a downward-API ``fieldRef.fieldPath``, as the kubelet renders it."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f"{key}={_go_quote(values[key])}" for key in sorted(values))
    keyed = _FIELD_KEY.match(path)
    if keyed is not None:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    raise ConfigError(f"unsupported fieldPath: {path}")


def _go_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def resource_value(
    pod: JsonObject, container: JsonObject, ref: JsonObject, allocatable: Mapping[str, str]
) -> str:
    """The value of a ``resourceFieldRef``: the limit (node allocatable when unset) / divisor."""
    name = ref.get("containerName") or container.get("name")
    target = next(
        (c for c in pod.get("spec", {}).get("containers", []) if c.get("name") == name),
        container,
    )
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    resources = (target.get("resources") or {}).get(kind) or {}
    raw = resources.get(resource)
    if raw is None and kind == "requests":
        raw = ((target.get("resources") or {}).get("limits") or {}).get(resource)
    if raw is None:
        raw = allocatable.get(resource, "0")
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(raw) / divisor))


def container_env(
    pod: JsonObject,
    container: JsonObject,
    lookup: ObjectLookup,
    rewrite: Callable[[str], str] = lambda text: text,
    allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables the kubelet sets from ``envFrom`` and ``env``, in their order.

    ``rewrite`` maps mount paths in literal values (see :class:`MountTable`). Raises
    :class:`ConfigError` while a referenced Secret, ConfigMap or key is missing.
    """
    namespace = pod["metadata"]["namespace"]
    cache: dict[tuple[str, str], dict[str, bytes] | None] = {}

    def source(kind: str, name: str) -> dict[str, bytes] | None:
        if (kind, name) not in cache:
            obj = lookup(kind, namespace, name)
            if obj is None:
                cache[kind, name] = None
            else:
                cache[kind, name] = secret_data(obj) if kind == "secrets" else configmap_data(obj)
        return cache[kind, name]

    env: dict[str, str] = {}
    for env_from in container.get("envFrom") or []:
        for kind, ref_key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = env_from.get(ref_key)
            if ref is None:
                continue
            data = source(kind, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind[:-1]} "{ref.get("name", "")}" not found')
            for key, value in data.items():
                name = env_from.get("prefix", "") + key
                if _ENV_NAME.match(name):  # the kubelet skips invalid names
                    env[name] = value.decode(errors="replace")

    for var in container.get("env") or []:
        name = var["name"]
        if var.get("value"):
            env[name] = expand(rewrite(var["value"]), env)
            continue
        value_from = var.get("valueFrom")
        if not value_from:
            env[name] = ""
            continue
        if "fieldRef" in value_from:
            env[name] = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            env[name] = resource_value(
                pod, container, value_from["resourceFieldRef"], allocatable or {}
            )
        else:
            for kind, ref_key, label in (
                ("secrets", "secretKeyRef", "Secret"),
                ("configmaps", "configMapKeyRef", "ConfigMap"),
            ):
                ref = value_from.get(ref_key)
                if ref is None:
                    continue
                optional = bool(ref.get("optional"))
                data = source(kind, ref.get("name", ""))
                if data is None:
                    if optional:
                        break
                    raise ConfigError(f'{kind[:-1]} "{ref.get("name", "")}" not found')
                key = ref.get("key", "")
                if key not in data:
                    if optional:
                        break
                    raise ConfigError(
                        f"couldn't find key {key} in {label} {namespace}/{ref.get('name', '')}"
                    )
                env[name] = data[key].decode(errors="replace")
                break
    return env


# --- volumes ----------------------------------------------------------------------------


def _safe_relative(path: Any, volume: str) -> Path:
    relative = PurePosixPath(str(path or ""))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise MountError(volume, f"invalid path {path!r}: must be relative, without '..'")
    return Path(*relative.parts)


def _write_file(target: Path, data: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode & 0o777)


def _write_keys(
    directory: Path,
    volume: str,
    data: Mapping[str, bytes],
    items: list[JsonObject] | None,
    default_mode: int,
    what: str,
) -> None:
    """Files for ``data`` (all keys, or just ``items``) as the kubelet's atomic writer lays them."""
    if not items:
        for key, value in data.items():
            _write_file(directory / _safe_relative(key, volume), value, default_mode)
        return
    for item in items:
        key = item.get("key", "")
        if key not in data:
            raise MountError(volume, f"{what} references non-existent {_KEY_WORD[what]} key: {key}")
        mode = item.get("mode", default_mode)
        _write_file(directory / _safe_relative(item.get("path", key), volume), data[key], mode)


_KEY_WORD = {"secret": "secret", "configmap": "config"}


def _write_source(
    pod: JsonObject,
    directory: Path,
    volume: str,
    kind: str,
    ref: JsonObject,
    default_mode: int,
    lookup: ObjectLookup,
) -> None:
    """One Secret or ConfigMap as files (a ``secret``/``configMap`` volume or projection)."""
    namespace = pod["metadata"]["namespace"]
    name = ref.get("secretName") if kind == "secrets" else ref.get("name")
    name = name or ref.get("name", "")
    obj = lookup(kind, namespace, name)
    what = kind[:-1]
    if obj is None:
        if ref.get("optional"):
            return
        raise MountError(volume, f'{what} "{name}" not found')
    data = secret_data(obj) if kind == "secrets" else configmap_data(obj)
    _write_keys(directory, volume, data, ref.get("items"), default_mode, what)


def _write_downward(
    pod: JsonObject, directory: Path, volume: str, items: list[JsonObject], default_mode: int
) -> None:
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            containers = pod["spec"].get("containers", [])
            value = resource_value(pod, containers[0], item["resourceFieldRef"], {})
        target = directory / _safe_relative(item["path"], volume)
        _write_file(target, value.encode(), item.get("mode", default_mode))


def mount_volumes(
    pod: JsonObject, pod_dir: Path, lookup: ObjectLookup, token: TokenSource
) -> dict[str, Path]:
    """Write every volume of ``pod`` under ``pod_dir/volumes``; the host path per volume.

    Raises :class:`MountError` (with the kubelet's wording) while a source is missing.
    """
    namespace = pod["metadata"]["namespace"]
    service_account = pod["spec"].get("serviceAccountName") or "default"
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        directory = pod_dir / "volumes" / name
        if directory.exists():  # refreshed from the current sources on each (re)mount
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        if "emptyDir" in volume:
            pass
        elif "secret" in volume:
            ref = volume["secret"]
            mode = ref.get("defaultMode", DEFAULT_FILE_MODE)
            _write_source(pod, directory, name, "secrets", ref, mode, lookup)
        elif "configMap" in volume:
            ref = volume["configMap"]
            mode = ref.get("defaultMode", DEFAULT_FILE_MODE)
            _write_source(pod, directory, name, "configmaps", ref, mode, lookup)
        elif "downwardAPI" in volume:
            spec = volume["downwardAPI"]
            mode = spec.get("defaultMode", DEFAULT_FILE_MODE)
            _write_downward(pod, directory, name, spec.get("items") or [], mode)
        elif "projected" in volume:
            spec = volume["projected"]
            mode = spec.get("defaultMode", DEFAULT_FILE_MODE)
            for projection in spec.get("sources") or []:
                if "secret" in projection:
                    ref = projection["secret"]
                    _write_source(pod, directory, name, "secrets", ref, mode, lookup)
                elif "configMap" in projection:
                    ref = projection["configMap"]
                    _write_source(pod, directory, name, "configmaps", ref, mode, lookup)
                elif "downwardAPI" in projection:
                    items = projection["downwardAPI"].get("items") or []
                    _write_downward(pod, directory, name, items, mode)
                elif "serviceAccountToken" in projection:
                    ref = projection["serviceAccountToken"]
                    minted = token(
                        namespace,
                        service_account,
                        ref.get("audience", ""),
                        int(ref.get("expirationSeconds", 3600)),
                    )
                    target = directory / _safe_relative(ref["path"], name)
                    _write_file(target, minted.encode(), mode)
        else:
            kinds = sorted(set(volume) - {"name"})
            raise MountError(name, f"volume type {kinds} is not supported by the sandbox kubelet")
        paths[name] = directory
    return paths


# --- mounts -----------------------------------------------------------------------------

_BEFORE = r"(?:^|(?<=[\s=:,'\"(]))"
_AFTER = r"(?=$|[/\s=:,'\";)])"


@dataclass(frozen=True)
class MountTable:
    """Where each mount path of one container lives on the host, and the rewriting of paths."""

    mounts: tuple[tuple[str, Path], ...]  # (mountPath, host path), longest mount path first

    @classmethod
    def of(cls, mounts: Iterable[tuple[str, Path]]) -> MountTable:
        cleaned = {str(PurePosixPath(path)): host for path, host in mounts if path != "/"}
        ordered = sorted(cleaned.items(), key=lambda item: len(item[0]), reverse=True)
        return cls(tuple(ordered))

    def host_path(self, path: str) -> Path | None:
        """The host location of container path ``path``, when it lies under a mount."""
        for mount_path, host in self.mounts:
            if path == mount_path:
                return host
            if path.startswith(mount_path + "/"):
                return host / path[len(mount_path) + 1 :]
        return None

    def rewrite(self, text: str) -> str:
        """``text`` with every mount path that stands as a path of its own mapped to the host.

        A mount path counts when it starts the text or follows whitespace, ``=``, ``:``,
        ``,``, a quote or ``(``, and ends the text or is followed by ``/`` or such a
        separator: ``--cache=/cache/db`` is rewritten, ``/cachefoo`` is not.
        """
        if not self.mounts:
            return text
        alternatives = "|".join(re.escape(path) for path, _ in self.mounts)
        pattern = re.compile(f"{_BEFORE}({alternatives}){_AFTER}")
        hosts = dict(self.mounts)
        return pattern.sub(lambda match: str(hosts[match.group(1)]), text)


def container_mounts(
    container: JsonObject, volumes: Mapping[str, Path], termination_log: Path
) -> MountTable:
    """The mount table of ``container``: its ``volumeMounts`` plus the termination log file."""
    mounts: list[tuple[str, Path]] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ConfigError(f'cannot find volume "{mount["name"]}" to mount into container')
        sub_path = mount.get("subPath") or ""
        host = volume / _safe_relative(sub_path, mount["name"]) if sub_path else volume
        mounts.append((mount["mountPath"], host))
    path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    mounts.append((path, termination_log))
    return MountTable.of(mounts)
