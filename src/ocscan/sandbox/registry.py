"""A real private registry: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1.

Users authenticate with HTTP Basic against an htpasswd file of bcrypt hashes; the TLS
variant serves a certificate signed by its own throw-away CA. Configuration, storage, keys
and the log all live in one work directory. No password is ever written in clear text.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from ocscan.sandbox.errors import SandboxError
from ocscan.sandbox.processes import (
    LOOPBACK,
    BackgroundProcess,
    ProcessServer,
    start_on_free_port,
)

REGISTRY_BINARY = "docker-registry"
REALM = "ocscan-sandbox"
# logrus quotes the message, so the user name's own quotes appear escaped: user \"bob\".
_FAILED_LOGIN = re.compile(r'error authenticating user \\"(.*?)\\"')


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise SandboxError(f"{binary} is not installed (make test installs it)")
    return path


def _run(argv: list[str], *, input_text: str | None = None) -> str:
    result = subprocess.run(argv, input=input_text, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # argv carries no secret (passwords go through stdin), so it may be shown.
        raise SandboxError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def write_htpasswd(path: Path, users: Mapping[str, str]) -> None:
    """Write bcrypt htpasswd lines for ``users`` (name -> password) to ``path``.

    Passwords reach ``htpasswd`` on stdin, never in its argv.
    """
    htpasswd = _need("htpasswd")
    lines = []
    for user, password in users.items():
        if not user or ":" in user:
            raise SandboxError(f"invalid registry user name {user!r}: empty or contains ':'")
        # -C 4: the lowest bcrypt cost keeps logins fast; this is a throw-away registry.
        lines.append(_run([htpasswd, "-niBC", "4", user], input_text=password).strip())
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


@dataclass(frozen=True)
class TlsFiles:
    """A CA certificate and a server certificate + key signed by it, for 127.0.0.1."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path, common_name: str = LOOPBACK) -> TlsFiles:
    """Create a CA and a leaf certificate valid for IP 127.0.0.1 and DNS localhost."""
    openssl = _need("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_file = directory / "ca.key", directory / "ca.crt"
    key_file, cert_file = directory / "server.key", directory / "server.crt"
    csr = directory / "server.csr"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        [openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_file), "-days", "7",
         "-subj", "/CN=ocscan sandbox CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    )  # fmt: skip
    _run(
        [openssl, "req", *ec, "-keyout", str(key_file), "-out", str(csr),
         "-subj", f"/CN={common_name}"]
    )  # fmt: skip
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName=IP:{LOOPBACK},DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _run(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_file), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert_file), "-days", "7", "-extfile", str(ext)]
    )  # fmt: skip
    for key in (ca_key, key_file):
        key.chmod(0o600)
    return TlsFiles(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


def _config(
    port: int, storage: Path, htpasswd: Path | None, tls: TlsFiles | None, log_level: str
) -> str:
    http: dict[str, Any] = {"addr": f"{LOOPBACK}:{port}", "secret": secrets.token_hex(16)}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert_file), "key": str(tls.key_file)}
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": log_level, "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": REALM, "path": str(htpasswd)}}
    return yaml.safe_dump(config, sort_keys=False)


class RegistryServer(ProcessServer):
    """A running ``docker-registry`` on 127.0.0.1; a context manager that stops it.

    ``users`` maps user names to passwords; with no users the registry is anonymous.
    """

    def __init__(
        self,
        process: BackgroundProcess,
        workdir: Path,
        port: int,
        users: tuple[str, ...],
        tls: TlsFiles | None,
    ) -> None:
        self.process = process
        self.workdir = workdir
        self.port = port
        self.users = users
        self.tls = tls

    @classmethod
    def start(
        cls,
        workdir: Path,
        users: Mapping[str, str],
        *,
        tls: bool = False,
        log_level: str = "info",
        pid_file: Path | None = None,
        timeout: float = 15.0,
    ) -> RegistryServer:
        """Configure and start a registry in ``workdir``; return once it answers HTTP."""
        binary = _need(REGISTRY_BINARY)
        workdir.mkdir(parents=True, exist_ok=True)
        storage = workdir / "storage"
        storage.mkdir(exist_ok=True)
        htpasswd: Path | None = None
        if users:
            htpasswd = workdir / "htpasswd"
            write_htpasswd(htpasswd, users)
        tls_files = make_tls_files(workdir / "tls") if tls else None
        config = workdir / "config.yml"
        log_file = workdir / "registry.log"

        def launch(port: int) -> RegistryServer:
            config.write_text(_config(port, storage, htpasswd, tls_files, log_level))
            config.chmod(0o600)  # holds the http secret
            process = BackgroundProcess.start(
                "docker-registry",
                [binary, "serve", str(config)],
                log_file=log_file,
                env={"PATH": "/usr/bin:/bin", "HOME": str(workdir)},
                cwd=workdir,
                pid_file=pid_file,
            )
            return cls(process, workdir, port, tuple(users), tls_files)

        def ready(server: RegistryServer) -> None:
            server.process.wait_for_http(
                f"{server.url}/v2/", verify=server.ssl_context(), timeout=timeout
            )

        return start_on_free_port(launch, ready)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate that signed the server certificate (TLS variant only)."""
        return None if self.tls is None else self.tls.ca_file

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What an ``httpx`` client needs as ``verify`` to trust this registry."""
        if self.tls is None:
            return True
        return ssl.create_default_context(cafile=str(self.tls.ca_file))

    def reference(self, repository: str, tag: str) -> str:
        """``127.0.0.1:PORT/repository:tag``."""
        return f"{self.address}/{repository}:{tag}"

    def failed_login_users(self) -> list[str]:
        """User names of failed logins so far, in log order (the registry logs only those)."""
        return _FAILED_LOGIN.findall(self.log_text())

    def __repr__(self) -> str:
        return f"RegistryServer({self.url!r}, users={list(self.users)!r}, pid={self.pid})"


class SilentRegistry:
    """A registry address that accepts connections and never answers: a scan against it
    stays in flight (Trivy's own timeout does not end it; the pod's deadline does)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)

    def all_closed_by_peer(self) -> bool:
        """Whether every client that connected has since closed its end."""
        for connection in list(self.connections):
            connection.setblocking(False)
            try:
                if connection.recv(65536) != b"":
                    return False
            except BlockingIOError:
                return False
            except OSError:
                continue
        return bool(self.connections)

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
