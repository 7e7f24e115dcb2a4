"""Image references, docker config documents and kubelet-exact credential matching."""

from ocscan.registry.credential import RegistryCredential
from ocscan.registry.dockerconfig import DockerConfigEntry, entries_from_secret, parse_docker_config
from ocscan.registry.keyring import CredentialMatch, Keyring
from ocscan.registry.pullsecrets import (
    InvalidSecret,
    PullCredentials,
    pull_secret_names,
    resolve_pull_credentials,
)
from ocscan.registry.reference import ImageReference, image_id_digest, parse_reference

__all__ = [
    "CredentialMatch",
    "DockerConfigEntry",
    "ImageReference",
    "InvalidSecret",
    "Keyring",
    "PullCredentials",
    "RegistryCredential",
    "entries_from_secret",
    "image_id_digest",
    "parse_docker_config",
    "parse_reference",
    "pull_secret_names",
    "resolve_pull_credentials",
]
