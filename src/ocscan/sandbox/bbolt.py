"""Write bbolt (etcd-io/bbolt) database files, as Trivy's vulnerability DB uses them.

The whole database is built in memory as nested :class:`Bucket` objects and written in one
go: two meta pages, an empty freelist, then a B+tree of leaf and branch pages per bucket
(small buckets without sub-buckets are stored inline in their parent, as bbolt does).

File layout (little-endian, as bbolt on amd64/arm64):

- page header, 16 bytes: ``id u64, flags u16, count u16, overflow u32``; a node larger than a
  page spans ``overflow`` more pages.
- meta (after the page header): ``magic u32, version u32, page_size u32, flags u32,
  root {pgid u64, sequence u64}, freelist u64, pgid u64, txid u64, checksum u64``; the
  checksum is FNV-1a 64 over every meta byte before it.
- leaf element, 16 bytes: ``flags u32, pos u32, ksize u32, vsize u32``; branch element,
  16 bytes: ``pos u32, ksize u32, pgid u64``. ``pos`` counts from the element itself to its
  key; the value follows the key.
- a bucket value: ``{root pgid u64, sequence u64}``, and for an inline bucket (root 0) a leaf
  page right after it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ocscan.sandbox.errors import SandboxError

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER = struct.Struct("<QHHI")
META = struct.Struct("<IIIIQQQQQ")  # everything up to (not including) the checksum
LEAF_ELEMENT = struct.Struct("<IIII")
BRANCH_ELEMENT = struct.Struct("<IIQ")
BUCKET_HEADER = struct.Struct("<QQ")
ELEMENT_SIZE = 16
BRANCH_FLAG, LEAF_FLAG, META_FLAG, FREELIST_FLAG = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF_FLAG = 0x01
MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2
DEFAULT_PAGE_SIZE = 4096
_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64-bit hash, the meta page checksum (Go's ``hash/fnv.New64a``)."""
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


@dataclass
class Bucket:
    """A bbolt bucket in memory: byte keys to byte values or nested buckets."""

    items: dict[bytes, bytes | Bucket] = field(default_factory=dict)

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``; a key holding a nested bucket cannot be overwritten."""
        _check_key(key)
        if isinstance(self.items.get(key), Bucket):
            raise SandboxError(f"bbolt key {key!r} already holds a bucket")
        if len(value) > MAX_VALUE_SIZE:
            raise SandboxError(f"bbolt value for {key!r} is too large ({len(value)} bytes)")
        self.items[key] = value

    def bucket(self, name: bytes) -> Bucket:
        """The nested bucket ``name``, created when missing."""
        _check_key(name)
        existing = self.items.get(name)
        if isinstance(existing, Bucket):
            return existing
        if existing is not None:
            raise SandboxError(f"bbolt key {name!r} already holds a value, not a bucket")
        child = Bucket()
        self.items[name] = child
        return child

    def sorted_items(self) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """Items in bbolt's order: byte-wise by key."""
        for key in sorted(self.items):
            yield key, self.items[key]


def _check_key(key: bytes) -> None:
    if not key:
        raise SandboxError("bbolt keys must not be empty")
    if len(key) > MAX_KEY_SIZE:
        raise SandboxError(f"bbolt key of {len(key)} bytes exceeds {MAX_KEY_SIZE}")


@dataclass(frozen=True)
class _Element:
    key: bytes
    value: bytes  # leaf: the value; branch: unused
    flags: int = 0  # leaf: BUCKET_LEAF_FLAG for a nested bucket
    child: int = 0  # branch: page id of the child node

    def size(self) -> int:
        return ELEMENT_SIZE + len(self.key) + len(self.value)


class _PageWriter:
    """Allocates page ids and collects page images in id order."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.pages: dict[int, bytes] = {}
        self.next_id = 3  # 0 and 1: meta pages, 2: freelist

    def node(self, flags: int, elements: list[_Element], page_id: int | None = None) -> bytes:
        """The bytes of one leaf or branch node (``page_id`` None: an inline page, id 0)."""
        header_and_elements = PAGE_HEADER.size + ELEMENT_SIZE * len(elements)
        packed, data = [], bytearray()
        for index, element in enumerate(elements):
            pos = header_and_elements + len(data) - (PAGE_HEADER.size + ELEMENT_SIZE * index)
            if flags == LEAF_FLAG:
                packed.append(
                    LEAF_ELEMENT.pack(element.flags, pos, len(element.key), len(element.value))
                )
                data += element.key + element.value
            else:
                packed.append(BRANCH_ELEMENT.pack(pos, len(element.key), element.child))
                data += element.key
        body_size = header_and_elements + len(data)
        overflow = 0 if page_id is None else (body_size - 1) // self.page_size
        header = PAGE_HEADER.pack(page_id or 0, flags, len(elements), overflow)
        return header + b"".join(packed) + bytes(data)

    def store(self, flags: int, elements: list[_Element]) -> int:
        """Write one node onto fresh pages; return its page id."""
        if len(elements) > 0xFFFF:
            raise SandboxError("a bbolt node holds at most 65535 elements")
        page_id = self.next_id
        image = self.node(flags, elements, page_id)
        pages = -(-len(image) // self.page_size) or 1
        self.pages[page_id] = image.ljust(pages * self.page_size, b"\0")
        self.next_id += pages
        return page_id

    def tree(self, elements: list[_Element]) -> int:
        """Store a B+tree of leaf ``elements`` (sorted); return the root page id."""
        flags = LEAF_FLAG
        while True:
            nodes = self._split(elements)
            ids = [self.store(flags, node) for node in nodes]
            if len(ids) == 1:
                return ids[0]
            elements = [
                _Element(key=node[0].key, value=b"", child=page_id)
                for node, page_id in zip(nodes, ids, strict=True)
            ]
            flags = BRANCH_FLAG

    def _split(self, elements: list[_Element]) -> list[list[_Element]]:
        """Group elements into nodes that fill at most one page, unless a single one is bigger."""
        nodes: list[list[_Element]] = [[]]
        size = PAGE_HEADER.size
        for element in elements:
            element_size = element.size()
            if nodes[-1] and size + element_size > self.page_size:
                nodes.append([])
                size = PAGE_HEADER.size
            nodes[-1].append(element)
            size += element_size
        return nodes

    def bucket_value(self, bucket: Bucket) -> bytes:
        """The value that stands for ``bucket`` in its parent: header, maybe an inline page."""
        elements = self.elements(bucket)
        inline_size = PAGE_HEADER.size + sum(element.size() for element in elements)
        has_buckets = any(element.flags & BUCKET_LEAF_FLAG for element in elements)
        if not has_buckets and inline_size <= self.page_size // 4:
            return BUCKET_HEADER.pack(0, 0) + self.node(LEAF_FLAG, elements)
        return BUCKET_HEADER.pack(self.tree(elements), 0)

    def elements(self, bucket: Bucket) -> list[_Element]:
        """Leaf elements of ``bucket``, nested buckets stored first."""
        return [
            _Element(key=key, value=self.bucket_value(value), flags=BUCKET_LEAF_FLAG)
            if isinstance(value, Bucket)
            else _Element(key=key, value=value)
            for key, value in bucket.sorted_items()
        ]


def _meta_page(page_id: int, page_size: int, root: int, high_water: int) -> bytes:
    meta = META.pack(MAGIC, VERSION, page_size, 0, root, 0, 2, high_water, page_id)
    checksum = struct.pack("<Q", fnv1a_64(meta))
    return (PAGE_HEADER.pack(page_id, META_FLAG, 0, 0) + meta + checksum).ljust(page_size, b"\0")


def encode_bbolt(root: Bucket, page_size: int = DEFAULT_PAGE_SIZE) -> bytes:
    """The bytes of a bbolt file whose root bucket holds ``root``'s items."""
    if page_size < 1024 or page_size & (page_size - 1):
        raise SandboxError(f"bbolt page size {page_size} is not a power of two >= 1024")
    writer = _PageWriter(page_size)
    root_page = writer.tree(writer.elements(root))
    high_water = writer.next_id
    pages = [
        _meta_page(0, page_size, root_page, high_water),
        _meta_page(1, page_size, root_page, high_water),
        PAGE_HEADER.pack(2, FREELIST_FLAG, 0, 0).ljust(page_size, b"\0"),
    ]
    pages += [writer.pages[page_id] for page_id in sorted(writer.pages)]
    return b"".join(pages)


def write_bbolt(path: Path, root: Bucket, page_size: int = DEFAULT_PAGE_SIZE) -> None:
    """Write ``root`` as a bbolt file at ``path`` (atomically replacing any old file)."""
    data = encode_bbolt(root, page_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.chmod(0o644)
    os.replace(temporary, path)
