"""Sample images: deterministic bytes, the files Trivy reads, valid OCI documents."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from ocscan.sandbox.oci import OCI_LAYER_GZIP, OCI_MANIFEST, ApkPackage, build_alpine_image
from ocscan.sandbox.trivydb import SAMPLE_APP

PACKAGES = [
    ApkPackage(name="libcrypto3", version="3.1.4-r1", origin="openssl"),
    ApkPackage(name="musl", version="1.2.4_git20230717-r4"),
]


def layer_files(packages: list[ApkPackage]) -> dict[str, tarfile.TarInfo | bytes]:
    image = build_alpine_image(packages)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layers[0].data))) as tar:
        files: dict[str, tarfile.TarInfo | bytes] = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            files[member.name] = extracted.read() if extracted else member
            assert member.mtime == 1_700_000_000
            assert (member.uid, member.gid) == (0, 0)
        return files


def test_same_input_same_digest_other_input_other_digest() -> None:
    first = build_alpine_image(PACKAGES)

    assert build_alpine_image(list(PACKAGES)).digest == first.digest
    assert build_alpine_image(PACKAGES[:1]).digest != first.digest
    assert build_alpine_image(PACKAGES, alpine_version="3.20.0").digest != first.digest
    assert build_alpine_image(PACKAGES, extra_files={"/app/id": b"2"}).digest != first.digest


def test_manifest_and_config_describe_the_layer() -> None:
    image = build_alpine_image(PACKAGES)
    manifest = json.loads(image.manifest.data)
    config = json.loads(image.config.data)
    layer = image.layers[0]

    assert image.digest == "sha256:" + hashlib.sha256(image.manifest.data).hexdigest()
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"] == image.config.descriptor()
    assert manifest["layers"] == [
        {"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": len(layer.data)}
    ]
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer.data)).hexdigest()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [diff_id]}
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


def test_layer_holds_os_release_and_apk_database() -> None:
    files = layer_files(list(SAMPLE_APP.packages))

    assert {"etc", "etc/apk", "lib", "lib/apk", "lib/apk/db"} <= set(files)
    assert b"ID=alpine\nVERSION_ID=3.19.1\n" in files["etc/os-release"]  # type: ignore[operator]
    assert files["etc/alpine-release"] == b"3.19.1\n"
    assert b"/alpine/v3.19/main" in files["etc/apk/repositories"]  # type: ignore[operator]
    installed = files["lib/apk/db/installed"]
    assert isinstance(installed, bytes)
    stanzas = [
        dict(line.split(":", 1) for line in s.splitlines())
        for s in installed.decode().split("\n\n")
    ]
    parsed = {(s["P"], s["V"], s["o"], s["A"]) for s in stanzas}
    assert parsed == {(p.name, p.version, p.source, p.arch) for p in SAMPLE_APP.packages}


def test_origin_defaults_to_the_package_name() -> None:
    assert ApkPackage(name="zlib", version="1.3.1-r0").source == "zlib"
    assert ApkPackage(name="libssl3", version="3.1.4-r1", origin="openssl").source == "openssl"
