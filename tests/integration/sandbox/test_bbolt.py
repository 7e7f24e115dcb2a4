"""The bbolt writer: read back by an independent reader here, and by the real Trivy."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from ocscan.sandbox.bbolt import Bucket, encode_bbolt, fnv1a_64, write_bbolt
from ocscan.sandbox.errors import SandboxError
from ocscan.sandbox.samples import SampleImage
from ocscan.sandbox.trivydb import SAMPLE_ADVISORIES, Advisory, build_trivy_db

# A deliberately separate, minimal bbolt reader, written from the format description in
# etcd-io/bbolt (internal/common/page.go, meta.go), not from the writer's code.
Tree = dict[bytes, "bytes | Tree"]


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        magic, version, self.page_size = struct.unpack_from("<III", data, 16)
        assert (magic, version) == (0xED0CDAED, 2)
        self.metas = [self._meta(page) for page in (0, 1)]
        self.pages_seen: dict[int, int] = {}  # page id -> flags
        self.branch_levels = 0  # the most branch pages on one root-to-leaf path

    def _meta(self, page: int) -> dict[str, int]:
        offset = page * self.page_size
        page_id, flags = struct.unpack_from("<QH", self.data, offset)
        assert (page_id, flags) == (page, 0x04)
        fields = struct.unpack_from("<IIIIQQQQQQ", self.data, offset + 16)
        assert fields[-1] == fnv1a_64(self.data[offset + 16 : offset + 16 + 56])
        names = ["magic", "version", "page_size", "flags", "root", "sequence", "freelist",
                 "pgid", "txid", "checksum"]  # fmt: skip
        return dict(zip(names, fields, strict=True))

    def root(self) -> Tree:
        meta = max(self.metas, key=lambda m: m["txid"])
        assert len(self.data) == meta["pgid"] * self.page_size
        freelist = meta["freelist"] * self.page_size
        assert struct.unpack_from("<QHH", self.data, freelist) == (meta["freelist"], 0x10, 0)
        return self._node(self.data, meta["root"] * self.page_size, meta["root"])

    def _node(self, data: bytes, offset: int, page_id: int, level: int = 0) -> Tree:
        stored_id, flags, count, overflow = struct.unpack_from("<QHHI", data, offset)
        self.branch_levels = max(self.branch_levels, level)
        assert stored_id == page_id
        if data is self.data:
            self.pages_seen[page_id] = flags
            assert offset + (overflow + 1) * self.page_size <= len(self.data)
        tree: Tree = {}
        previous = b""
        for index in range(count):
            element = offset + 16 + 16 * index
            if flags == 0x01:  # branch
                pos, ksize, child = struct.unpack_from("<IIQ", data, element)
                key = data[element + pos : element + pos + ksize]
                subtree = self._node(self.data, child * self.page_size, child, level + 1)
                assert min(subtree) == key  # a branch key is its child's first key
                tree.update(subtree)
            else:
                assert flags == 0x02
                leaf_flags, pos, ksize, vsize = struct.unpack_from("<IIII", data, element)
                key = data[element + pos : element + pos + ksize]
                value = data[element + pos + ksize : element + pos + ksize + vsize]
                tree[key] = self._bucket(value) if leaf_flags & 1 else value
            assert key > previous  # keys are strictly sorted
            previous = key
        return tree

    def _bucket(self, value: bytes) -> Tree:
        root, _sequence = struct.unpack_from("<QQ", value)
        if root == 0:  # inline: a leaf page follows the header
            return self._node(value, 16, 0)
        return self._node(self.data, root * self.page_size, root)


def as_tree(bucket: Bucket) -> Tree:
    return {
        key: as_tree(value) if isinstance(value, Bucket) else value
        for key, value in bucket.items.items()
    }


def test_fnv1a_64_matches_the_published_test_vectors() -> None:
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_empty_database() -> None:
    reader = Reader(encode_bbolt(Bucket()))

    assert reader.root() == {}
    assert [m["txid"] for m in reader.metas] == [0, 1]


def test_many_keys_nested_and_inline_buckets_and_overflow_pages_read_back() -> None:
    root = Bucket()
    big = root.bucket(b"big")
    for number in range(20_000):  # several levels of branch pages
        big.put(f"key-{number:06d}".encode(), f"value {number} ".encode() * (number % 7))
    nested = root.bucket(b"nested")
    for outer in range(300):  # many sub-buckets: some inline, one large enough for pages
        child = nested.bucket(f"pkg-{outer:04d}".encode())
        for inner in range(1 if outer else 400):
            child.put(f"CVE-2024-{inner:05d}".encode(), b'{"FixedVersion":"1.0-r0"}')
    root.bucket(b"empty")
    root.bucket(b"huge-values").put(b"blob", bytes(range(256)) * 100)  # spans 7 pages

    reader = Reader(encode_bbolt(root))

    assert reader.root() == as_tree(root)
    assert set(reader.pages_seen.values()) == {0x01, 0x02}
    assert reader.branch_levels >= 2  # branch pages pointing at branch pages
    assert any(  # an overflowing node occupies more than one page
        struct.unpack_from("<I", reader.data, page * reader.page_size + 12)[0] > 0
        for page in reader.pages_seen
    )


def test_writes_are_deterministic_and_atomic(tmp_path: Path) -> None:
    root = Bucket()
    for key in (b"b", b"a", b"c"):  # insertion order does not matter
        root.bucket(b"x").put(key, key * 3)
    path = tmp_path / "db" / "x.db"

    write_bbolt(path, root)
    first = path.read_bytes()
    write_bbolt(path, root)

    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["x.db"]


def test_bad_keys_and_kind_clashes_are_refused() -> None:
    root = Bucket()
    root.put(b"value", b"1")
    with pytest.raises(SandboxError, match="empty"):
        root.put(b"", b"x")
    with pytest.raises(SandboxError, match="already holds a value"):
        root.bucket(b"value")
    root.bucket(b"bucket")
    with pytest.raises(SandboxError, match="already holds a bucket"):
        root.put(b"bucket", b"x")


def test_trivy_reads_a_db_large_enough_for_branch_pages(
    scan_image: Any, sample_image: SampleImage, tmp_path: Path
) -> None:
    # Thousands of unrelated packages and vulnerabilities around the sample advisories, so the
    # OS bucket and the vulnerability bucket are B+trees with branch pages.
    filler = [
        Advisory(package=f"filler-{n:05d}", id=f"CVE-2099-{n:05d}", fixed_version="1.0-r0")
        for n in range(5000)
    ]
    cache = tmp_path / "cache"
    build_trivy_db(cache, [*filler, *SAMPLE_ADVISORIES])
    reader = Reader((cache / "db" / "trivy.db").read_bytes())
    tree = reader.root()
    assert 0x01 in reader.pages_seen.values()
    alpine = tree[b"alpine 3.19"]
    assert isinstance(alpine, dict)
    assert json.loads(alpine[b"filler-04999"][b"CVE-2099-04999"]) == {"FixedVersion": "1.0-r0"}  # type: ignore[index,arg-type]

    run = scan_image(sample_image.reference, credential=sample_image.credential, cache_dir=cache)

    assert run.findings() == sample_image.expected_findings
