"""Run the Kubernetes API emulator alone until SIGINT or SIGTERM.

    python -m ocscan.sandbox.kube --kubeconfig /tmp/kubeconfig [--port 0] [--tls-dir DIR]

Prints the URL once serving; the kubeconfig holds the admin token.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ocscan.sandbox.kube.server import KubeEmulator
from ocscan.sandbox.registry import make_tls_files


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until a termination signal; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m ocscan.sandbox.kube")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write it")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--namespace", help="the kubeconfig context's namespace")
    parser.add_argument("--tls-dir", type=Path, help="serve HTTPS with a CA made here")
    parser.add_argument("--kubernetes-version", default="1.32")
    args = parser.parse_args(argv)

    tls = make_tls_files(args.tls_dir) if args.tls_dir else None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator = KubeEmulator(port=args.port, tls=tls, kubernetes_version=args.kubernetes_version)
    with emulator:
        emulator.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
        print(emulator.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
