"""Which docker config keys apply to an image, with the kubelet's exact semantics.

Reproduces ``pkg/credentialprovider`` (``BasicDockerKeyring.Add``/``Lookup``,
``URLsMatch``, ``SplitURL``) for the credentials of a pod's pull secrets:

* A key is normalised like ``Add`` does: ``https://`` is assumed when there is no scheme,
  a ``/v1/`` or ``/v2/`` path prefix is dropped, and the key becomes ``host[:port][/path]``.
* A key matches an image (``registry/repository``, tag and digest dropped) when the port
  strings are equal, the hosts have as many dot-separated labels, each image label matches
  the key's label as a Go ``path.Match`` glob (``*``, ``?``, ``[...]``; a wildcard never
  spans a dot), and the key's path is a plain string prefix of the image path. As in the
  kubelet, ``host/team`` therefore also matches ``host/teams/app``. (In a key, ``?``
  starts a URL query and ``^`` is not a host character, so the kubelet never sees them
  as wildcards; ocscan rejects such keys.)
* All matching credentials are returned, keys in reverse lexicographic order (the most
  specific first), and for one key in the order the sources were given. All pull secrets
  of a pod share one such index: the kubelet ``Add``s every secret to a single
  ``BasicDockerKeyring``, so a more specific key of a later secret comes before a
  less specific key of an earlier one.
* Only when nothing matched and the image is on Docker Hub do credentials stored under
  ``index.docker.io`` (e.g. ``https://index.docker.io/v1/``) apply.
  ``registry-1.docker.io`` and ``*.docker.io`` never match Docker Hub images.

Deliberate differences from the kubelet, all of them stricter:

* The Docker Hub fallback applies to images whose registry is ``docker.io``. The kubelet
  decides by a name heuristic that also hands Docker Hub credentials to ``localhost/app``
  and to upper-case single-label hosts; ocscan never sends them to another registry.
* A key the kubelet would drop or could never match is an error (see
  :func:`parse_registry_key`), so a typo is reported instead of silently losing access.
* Credentials filed under keys that normalise to the same form within one source keep the
  document order (the kubelet's order there is Go map order, i.e. random).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from ocscan.errors import OcscanError
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.reference import DOCKER_HUB, ImageReference, parse_reference

DOCKER_HUB_KEY = "index.docker.io"
"""The normalised key whose credentials are the Docker Hub fallback."""

_SCHEMES = ("https://", "http://")
_OTHER_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# Characters Go's url.Parse accepts in a host (besides letters, digits and non-ASCII).
_HOST_PUNCTUATION = frozenset("-._~!$&'()*+,;=:[]<>\"")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_PORT_RE = re.compile(r"(?::[0-9]*)?")


class InvalidRegistryKeyError(OcscanError, ValueError):
    """A docker config key is not a registry address the kubelet could ever match."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"invalid registry key {describe_key(key)}: {reason}")


def describe_key(key: str) -> str:
    """``key`` quoted for a message, unless it may carry user information (a password)."""
    return "(a key with user information)" if "@" in key else repr(key)


class KeyedCredential(Protocol):
    """Anything that files a credential under a docker config key (a ``DockerConfigEntry``)."""

    @property
    def key(self) -> str: ...

    @property
    def credential(self) -> RegistryCredential: ...


class CredentialMatch(BaseModel):
    """A credential that applies to an image: its key as written and where it came from."""

    model_config = ConfigDict(frozen=True)

    key: str
    """The docker config key exactly as written in its source."""
    source: str
    """The secret (``namespace/name``) or file the key was read from."""
    credential: RegistryCredential


@dataclass(frozen=True, slots=True)
class RegistryKey:
    """A docker config key, normalised as the kubelet's ``BasicDockerKeyring.Add`` does."""

    normalized: str
    """``host[:port][/path]``: the kubelet's index entry."""
    labels: tuple[str, ...]
    port: str
    path: str
    _globs: tuple[re.Pattern[str], ...]

    def matches(self, name: str) -> bool:
        """Whether this key applies to ``name`` (``host[:port]/path``, no tag or digest)."""
        host, slash, rest = name.partition("/")
        path = slash + rest
        labels, port = _split_host_port(host)
        return (
            port == self.port
            and len(labels) == len(self._globs)
            and path.startswith(self.path)
            and all(glob.fullmatch(label) for glob, label in zip(self._globs, labels, strict=True))
        )


@functools.lru_cache(maxsize=1024)  # the same few keys recur in every namespace's secrets
def parse_registry_key(key: str) -> RegistryKey:
    """Normalise a docker config key; raise :class:`InvalidRegistryKeyError` if unusable.

    Rejected, where the kubelet would ignore the entry or silently never match it: control
    characters, schemes other than http(s), user information, queries, fragments,
    percent-escapes, an empty or malformed host or port, and malformed wildcard patterns.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidRegistryKeyError(key, "contains a control character")
    rest = key
    for scheme in _SCHEMES:
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    if _OTHER_SCHEME_RE.match(rest):
        raise InvalidRegistryKeyError(key, "only http:// and https:// keys are supported")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if "@" in authority:
        raise InvalidRegistryKeyError(key, "user information is not allowed in a registry key")
    if "?" in rest or "#" in rest:
        raise InvalidRegistryKeyError(key, "a registry key has no query or fragment")
    if "%" in rest:
        raise InvalidRegistryKeyError(key, "percent-escapes are not supported in registry keys")
    _check_authority(key, authority)

    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    if path == "/":
        path = ""
    labels, port = _split_host_port(authority)
    globs = []
    for label in labels:
        try:
            globs.append(_compile_glob(label))
        except ValueError as exc:
            reason = f"host label {label!r} is not a valid wildcard pattern ({exc})"
            break
    else:
        return RegistryKey(authority + path, tuple(labels), port, path, tuple(globs))
    raise InvalidRegistryKeyError(key, reason)


class Keyring:
    """Credentials from several sources, looked up per image in the kubelet's try order.

    ``sources`` are ``(source, entries)`` pairs in order, e.g. a pod's pull secrets as
    ``("namespace/name", entries)``. Raises :class:`InvalidRegistryKeyError` for an
    unusable key (entries from :func:`~ocscan.registry.dockerconfig.parse_docker_config`
    were checked already).
    """

    def __init__(self, sources: Iterable[tuple[str, Iterable[KeyedCredential]]] = ()) -> None:
        keys: dict[str, RegistryKey] = {}
        filed: dict[str, list[CredentialMatch]] = {}
        for source, entries in sources:
            for entry in entries:
                parsed = parse_registry_key(entry.key)
                keys.setdefault(parsed.normalized, parsed)
                match = CredentialMatch(key=entry.key, source=source, credential=entry.credential)
                filed.setdefault(parsed.normalized, []).append(match)
        self._index: tuple[tuple[RegistryKey, tuple[CredentialMatch, ...]], ...] = tuple(
            (keys[normalized], tuple(filed[normalized]))
            for normalized in sorted(keys, reverse=True)
        )
        self._docker_hub: tuple[CredentialMatch, ...] = tuple(filed.get(DOCKER_HUB_KEY, ()))

    def lookup(self, image: ImageReference | str) -> list[CredentialMatch]:
        """The credentials that apply to ``image``, in the order they are to be tried.

        A string is parsed with :func:`~ocscan.registry.reference.parse_reference`
        (raising :class:`~ocscan.errors.InvalidReferenceError`).
        """
        reference = parse_reference(image) if isinstance(image, str) else image
        name = reference.name
        found = [match for key, matches in self._index if key.matches(name) for match in matches]
        if not found and reference.registry == DOCKER_HUB:
            found = list(self._docker_hub)
        return found


def _check_authority(key: str, authority: str) -> None:
    """Reject what Go's ``url.Parse`` rejects in a host, and an empty host."""
    if authority.startswith("["):
        end = authority.rfind("]")
        if end < 0 or not _IPV6_RE.fullmatch(authority[: end + 1]):
            raise InvalidRegistryKeyError(key, "malformed IPv6 host")
        host, port = authority[: end + 1], authority[end + 1 :]
    else:
        colon = authority.rfind(":")
        host, port = (authority, "") if colon < 0 else (authority[:colon], authority[colon:])
        bad = sorted({c for c in host if c.isascii() and not c.isalnum()} - _HOST_PUNCTUATION)
        if bad:
            raise InvalidRegistryKeyError(key, f"invalid character {bad[0]!r} in host")
    if not _PORT_RE.fullmatch(port):
        raise InvalidRegistryKeyError(key, "the port is not a number")
    if not host:
        raise InvalidRegistryKeyError(key, "no registry host")


def _split_host_port(hostport: str) -> tuple[list[str], str]:
    """Host labels and port, like the kubelet's ``SplitURL`` (Go's ``net.SplitHostPort``).

    When Go cannot split (no port, too many colons, stray brackets) the whole string is
    the host and the port is empty; that is reproduced, quirks included.
    """
    split = _go_split_host_port(hostport)
    host, port = split if split is not None else (hostport, "")
    return host.split("."), port


def _go_split_host_port(hostport: str) -> tuple[str, str] | None:
    colon = hostport.rfind(":")
    if colon < 0:
        return None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 == len(hostport) or end + 1 != colon:
            return None
        host = hostport[1:end]
        if "[" in hostport[1:] or "]" in hostport[end + 1 :]:
            return None
    else:
        host = hostport[:colon]
        if ":" in host or "[" in hostport or "]" in hostport:
            return None
    return host, hostport[colon + 1 :]


def _compile_glob(pattern: str) -> re.Pattern[str]:
    """Translate a Go ``path.Match`` pattern; raise ``ValueError`` where Go reports
    ``ErrBadPattern`` (such a pattern never matches anything in the kubelet)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[str] = []
            first = True
            while not (i < n and pattern[i] == "]" and not first):
                low, i = _class_char(pattern, i)
                high = low
                if i < n and pattern[i] == "-":
                    high, i = _class_char(pattern, i + 1)
                if low <= high:  # Go accepts an inverted range, which matches nothing
                    ranges.append(f"{re.escape(low)}-{re.escape(high)}")
                first = False
            i += 1
            if ranges:
                out.append(f"[{'^' if negated else ''}{''.join(ranges)}]")
            else:
                out.append("." if negated else "(?!)")
        elif char == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """One character of a ``[...]`` class, as Go's ``getEsc`` reads it."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError("malformed character class")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError("malformed character class")
    if i + 1 >= len(pattern):
        raise ValueError("unterminated character class")
    return pattern[i], i + 1
