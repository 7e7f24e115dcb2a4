"""Sample images pushed to a sandbox registry, with the findings Trivy must report for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ocscan.registry.credential import RegistryCredential
from ocscan.registry.platform import Platform
from ocscan.sandbox.oci import (
    LINUX_AMD64,
    LINUX_ARM64,
    OciImage,
    build_alpine_image,
    build_index,
    push_image,
)
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.trivydb import (
    SAMPLE_ALPINE_VERSION,
    SAMPLE_APP,
    SAMPLE_MINIMAL,
    SampleImageSpec,
)

# apk's name of each architecture, as /lib/apk/db/installed records it.
_APK_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}

SAMPLE_MULTI_PLATFORM: Mapping[Platform, SampleImageSpec] = {
    LINUX_AMD64: SAMPLE_APP,
    LINUX_ARM64: SAMPLE_MINIMAL,
}
"""A multi-platform image whose variants differ: SAMPLE_APP's packages on amd64,
SAMPLE_MINIMAL's on arm64, so each platform has findings of its own."""


@dataclass(frozen=True)
class SampleImage:
    """A sample image as pushed: where it is, the credential that reads it, what Trivy finds."""

    registry: RegistryServer
    credential: RegistryCredential | None
    spec: SampleImageSpec
    tag: str
    digest: str
    platforms: Mapping[Platform, SampleImageSpec] = field(default_factory=dict)
    """For a multi-platform image (``digest`` is its index's): what each variant holds;
    ``spec`` is the variant a scanner picks by default (linux/amd64)."""

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


def _variant(spec: SampleImageSpec, platform: Platform) -> OciImage:
    arch = _APK_ARCH.get(platform.architecture, platform.architecture)
    packages = [package.model_copy(update={"arch": arch}) for package in spec.packages]
    return build_alpine_image(packages, alpine_version=SAMPLE_ALPINE_VERSION, platform=platform)


def push_multi_platform_sample(
    registry: RegistryServer,
    repository: str,
    credential: RegistryCredential | None,
    variants: Mapping[Platform, SampleImageSpec] = SAMPLE_MULTI_PLATFORM,
    tag: str = "1.0",
) -> SampleImage:
    """Build an OCI index of one image per platform of ``variants`` (the packages of its
    spec) and push it, with its images, to ``registry`` as ``repository:tag``."""
    index = build_index({platform: _variant(spec, platform) for platform, spec in variants.items()})
    digest = push_image(
        index, registry.url, repository, tag, credential=credential, ca_file=registry.ca_file
    )
    default = variants[LINUX_AMD64]
    spec = SampleImageSpec(repository, default.packages, default.expected_findings)
    return SampleImage(registry, credential, spec, tag, digest, platforms=dict(variants))
