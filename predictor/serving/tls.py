"""TLS for both ports from one certificate: --ssl_certfile/--ssl_keyfile (and --ssl_ca_certs to require
client certificates). Rotation without a restart: REST through KServe's certificate refresher (it watches
the files), gRPC through gRPC's dynamic credentials, which ask ``_fetch`` at each handshake whether the
files changed (cert-manager replaces them in place).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


@dataclass
class TlsFiles:
    certfile: Path
    keyfile: Path
    ca_certs: Path | None = None
    _stamp: tuple[float, ...] = field(default=(), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @classmethod
    def from_settings(cls, certfile: str | None, keyfile: str | None, ca_certs: str | None) -> TlsFiles | None:
        if not certfile and not keyfile:
            if ca_certs:
                raise ValueError("--ssl_ca_certs needs --ssl_certfile and --ssl_keyfile")
            return None
        if not (certfile and keyfile):
            raise ValueError("TLS needs both --ssl_certfile and --ssl_keyfile")
        files = cls(Path(certfile), Path(keyfile), Path(ca_certs) if ca_certs else None)
        for path in files.paths:
            if not path.is_file():
                raise ValueError(f"TLS file {path} does not exist or is not a file")
        return files

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.certfile, self.keyfile) + ((self.ca_certs,) if self.ca_certs else ())

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=self.ca_certs is not None
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        with self._lock:
            self._stamp = self._mtimes()
            pair = (self.keyfile.read_bytes(), self.certfile.read_bytes())
            root = self.ca_certs.read_bytes() if self.ca_certs else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=root)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration when a file changed, else None."""
        try:
            if self._mtimes() == self._stamp:
                return None
            log.info("TLS files changed: gRPC uses the new certificate from now on")
            return self._configuration()
        except OSError as exc:  # mid-rotation: keep the current certificate, try again next handshake
            log.warning("cannot read the TLS files (%s); keeping the current certificate", exc)
            return None

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(path.stat().st_mtime_ns for path in self.paths)
