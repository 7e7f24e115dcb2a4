"""Platforms as ``os/architecture[/variant]``: parsed, printed, refused with the reason."""

from __future__ import annotations

import pytest

from ocscan.registry.platform import InvalidPlatformError, Platform


@pytest.mark.parametrize("text", ["linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"])
def test_a_platform_prints_as_it_is_written(text: str) -> None:
    assert str(Platform.parse(text)) == text


def test_the_variant_is_optional() -> None:
    assert Platform.parse("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert Platform.parse("linux/arm64").variant is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("linux", "expected os/architecture[/variant]"),
        ("linux/", "expected os/architecture[/variant]"),
        ("linux/arm/v7/x", "expected os/architecture[/variant]"),
        ("linux/ARM64", "'ARM64' is not a platform name part"),
        ("linux/arm 64", "'arm 64' is not a platform name part"),
    ],
)
def test_a_malformed_platform_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidPlatformError) as caught:
        Platform.parse(text)
    assert text in str(caught.value) and reason in str(caught.value)
