"""Sample images pushed to a sandbox registry, with the findings Trivy must report for them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.oci import build_alpine_image, push_image
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.trivydb import SAMPLE_ALPINE_VERSION, SampleImageSpec


@dataclass(frozen=True)
class SampleImage:
    """A sample image as pushed: where it is, the credential that reads it, what Trivy finds."""

    registry: RegistryServer
    credential: RegistryCredential | None
    spec: SampleImageSpec
    tag: str
    digest: str

    @property
    def repository(self) -> str:
        return self.spec.repository

    @property
    def reference(self) -> str:
        """``127.0.0.1:PORT/team/app:1.0``."""
        return f"{self.registry.address}/{self.repository}:{self.tag}"

    @property
    def digest_reference(self) -> str:
        """``127.0.0.1:PORT/team/app@sha256:...``: what a pod's ``imageID`` names."""
        return f"{self.registry.address}/{self.repository}@{self.digest}"

    @property
    def ca_file(self) -> Path | None:
        return self.registry.ca_file

    @property
    def expected_ids(self) -> frozenset[str]:
        return self.spec.expected_ids

    @property
    def expected_findings(self) -> frozenset[tuple[str, str]]:
        """``(installed package, vulnerability id)`` pairs."""
        return self.spec.expected_findings


def push_sample(
    registry: RegistryServer,
    spec: SampleImageSpec,
    credential: RegistryCredential | None,
    tag: str = "1.0",
) -> SampleImage:
    """Build the image of ``spec`` and push it to ``registry`` as ``spec.repository:tag``."""
    image = build_alpine_image(spec.packages, alpine_version=SAMPLE_ALPINE_VERSION)
    digest = push_image(
        image,
        registry.url,
        spec.repository,
        tag,
        credential=credential,
        ca_file=registry.ca_file,
    )
    return SampleImage(registry=registry, credential=credential, spec=spec, tag=tag, digest=digest)
