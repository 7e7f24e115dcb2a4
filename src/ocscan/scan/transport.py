"""Getting a scanner pod's report back through its log, intact.

The kubelet rotates container logs at 10 MiB, and Trivy's JSON for a big image can pass that.
So the scanner compresses the report, frames it with its length and SHA-256, and prints it as
base64 lines; the agent finds the frame, checks both and decompresses. The frame travels
after Trivy's own messages, which stay readable in the log for humans and for error
classification.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
import zlib

from ocscan.errors import OcscanError

FRAME_BEGIN = "ocscan-report-begin"
FRAME_END = "ocscan-report-end"
DEFAULT_REPORT_CAP = 64 * 1024 * 1024  # decompressed JSON bytes
# Stay clear of the kubelet's default 10 MiB rotation for the framed (base64) text.
MAX_FRAME_BYTES = 9 * 1024 * 1024

# POSIX sh, so it runs in the official Trivy image (busybox) and on any Linux host.
# Trivy writes JSON to a scratch file (TRIVY_OUTPUT, as its argv ends with `-- IMAGE`);
# on success the file is framed onto stdout.
# Every path comes from the environment so the pod spec stays the single source of truth.
SCANNER_SCRIPT = f"""\
set -u
report="$OCSCAN_SCRATCH/report.json"
TRIVY_OUTPUT="$report" "$@"
status=$?
if [ "$status" -ne 0 ]; then exit "$status"; fi
size=$(wc -c < "$report" | tr -d ' ')
if [ "$size" -gt "$OCSCAN_REPORT_CAP" ]; then
  echo "report_too_large: Trivy wrote $size bytes, above the cap of $OCSCAN_REPORT_CAP" >&2
  exit 65
fi
sum=$(sha256sum "$report" | cut -d ' ' -f 1)
gzip -c "$report" > "$report.gz"
framed=$(( ($(wc -c < "$report.gz" | tr -d ' ') + 2) / 3 * 4 ))
if [ "$framed" -gt {MAX_FRAME_BYTES} ]; then
  echo "report_too_large: the compressed report ($framed bytes framed) would not" \
       "survive the kubelet's log rotation" >&2
  exit 65
fi
echo "{FRAME_BEGIN} sha256=$sum bytes=$size"
base64 "$report.gz"
echo "{FRAME_END}"
"""
REPORT_TOO_LARGE_EXIT = 65

_BEGIN = re.compile(rf"^{FRAME_BEGIN} sha256=([0-9a-f]{{64}}) bytes=(\d+)$", re.MULTILINE)


class TransportError(OcscanError):
    """A scanner's report could not be recovered from its log."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind  # a FailureKind value: "report_too_large" or "scanner_error"
        self.message = message
        super().__init__(message)


def frame_report(report: bytes) -> str:
    """What :data:`SCANNER_SCRIPT` prints for ``report``: used by tests and local runners."""
    digest = hashlib.sha256(report).hexdigest()
    body = base64.encodebytes(gzip.compress(report)).decode()
    return f"{FRAME_BEGIN} sha256={digest} bytes={len(report)}\n{body}{FRAME_END}\n"


def unframe_report(log: str, *, cap: int = DEFAULT_REPORT_CAP) -> bytes:
    """The report from a scanner's log, verified; raises :class:`TransportError`."""
    begin = _BEGIN.search(log)
    if begin is None:
        raise TransportError("scanner_error", "the scanner log holds no report frame")
    expected_sha, expected_size = begin.group(1), int(begin.group(2))
    if expected_size > cap:
        raise TransportError(
            "report_too_large", f"the report has {expected_size} bytes, above the cap of {cap}"
        )
    end = log.find(f"\n{FRAME_END}", begin.end())
    if end < 0:
        raise TransportError("scanner_error", "the report frame is truncated (no end marker)")
    body = log[begin.end() : end]
    try:
        compressed = base64.b64decode("".join(body.split()), validate=True)
        # max_length guards against a decompression bomb larger than the announced size.
        decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        report = decompressor.decompress(compressed, expected_size + 1)
    except (binascii.Error, zlib.error) as error:
        raise TransportError("scanner_error", f"the report frame is corrupt: {error}") from None
    if len(report) != expected_size or hashlib.sha256(report).hexdigest() != expected_sha:
        raise TransportError("scanner_error", "the report frame failed its integrity check")
    return report
