"""Getting a scanner pod's report back through its log, intact.

The kubelet rotates container logs at ``containerLogMaxSize`` (10 MiB unless changed), and
``kubectl logs`` (like the API) serves only the current file. So the scanner compresses the
report, frames it with its length and SHA-256, and prints it as base64 lines; the agent finds
the frame, checks both and decompresses. The frame travels after Trivy's own messages, which
stay readable in the log for humans and for error classification. A report whose log would
not fit one log file is refused (``report_too_large``) rather than cut by a rotation.
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
DEFAULT_LOG_MAX = 10 * 1024 * 1024  # the kubelet's default containerLogMaxSize
# What the CRI log format adds to each line on disk: "<RFC 3339 nano time> <stream> <F|P> ",
# plus its newline. containerd writes the time in UTC ("...Z"); CRI-O's conmon with a zone
# offset ("+01:00"): budget for the longer. base64 prints 76 characters a line.
_LINE_OVERHEAD = len("2006-01-02T15:04:05.000000000+01:00 stdout F ") + 1
_BASE64_LINE = 76

# POSIX sh, so it runs in the official Trivy image (busybox) and on any Linux host.
# Trivy writes JSON to a scratch file (TRIVY_OUTPUT, as its argv ends with `-- IMAGE`); its
# messages go to stderr as they come and to a file (tee), to count what they take in the
# log. On success the report is framed onto stdout, if the whole log fits one log file.
# Every path and limit comes from the environment so the pod spec stays the single source.
SCANNER_SCRIPT = f"""\
set -u
report="$OCSCAN_SCRATCH/report.json"
messages="$OCSCAN_SCRATCH/messages.log"
{{ {{ TRIVY_OUTPUT="$report" "$@"; echo "$?" > "$OCSCAN_SCRATCH/status"; }} 2>&1 1>&3 \
  | tee "$messages" >&2; }} 3>&1
status=$(cat "$OCSCAN_SCRATCH/status" 2>/dev/null)
case "$status" in
  ''|*[!0-9]*) echo "scanner: Trivy's exit status was not recorded" >&2; exit 70 ;;
esac
if [ "$status" -ne 0 ]; then exit "$status"; fi
size=$(wc -c < "$report" | tr -d ' ')
case "$size" in
  ''|*[!0-9]*) echo "scanner: Trivy wrote no report" >&2; exit 70 ;;
esac
if [ "$size" -gt "$OCSCAN_REPORT_CAP" ]; then
  echo "report_too_large: Trivy wrote $size bytes, above the cap of $OCSCAN_REPORT_CAP" >&2
  exit 65
fi
sum=$(sha256sum "$report" | cut -d ' ' -f 1)
gzip -c "$report" > "$report.gz"
framed=$(( ($(wc -c < "$report.gz" | tr -d ' ') + 2) / 3 * 4 ))
logged=$(( $(wc -c < "$messages") + ($(wc -l < "$messages") + 1) * {_LINE_OVERHEAD} \
  + framed + (framed / {_BASE64_LINE} + 3) * {_LINE_OVERHEAD} + 256 ))
if [ "$logged" -ge "$OCSCAN_LOG_MAX" ]; then
  echo "report_too_large: the framed report would take the log to $logged bytes, past" \
       "one log file of $OCSCAN_LOG_MAX bytes (the kubelet's containerLogMaxSize," \
       "scanner.log_max_bytes), where the kubelet's rotation would cut it" >&2
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
