"""A throwaway certificate authority for the brokers' TLS listeners and the tests.

Made once per state folder with the ``openssl`` command (EC P-256 keys, unencrypted,
PKCS#8), in ``STATE/tls`` (never committed, never reused elsewhere):

==========================  =============================================================
``ca.pem``                  the CA the brokers and the tests' clients trust
``server.pem/.key``         every broker's certificate, for DNS name ``localhost`` only:
                            clients connect to ``localhost``; ``127.0.0.1`` is a host
                            name mismatch, on purpose (a test case)
``client.pem/.key``         a client certificate (CN ``eventbinder-client``) for mutual TLS
``client-expired.pem/.key`` signed by the CA, valid only on 1 January 2020
``other-ca.pem``            an unrelated CA: a client trusting it refuses the brokers
``other-client.pem/.key``   a client certificate the brokers do not trust (other CA)
==========================  =============================================================

:func:`ensure` makes whatever is missing; the files are world-readable (the brokers
run as their own users) except the CA keys.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from .common import BrokerError, ensure_dirs
from .procs import run

__all__ = ["CLIENT_NAME", "SERVER_NAME", "Authority", "ensure"]

#: The only name in the brokers' certificate.
SERVER_NAME = "localhost"
#: The common name of the tests' client certificate.
CLIENT_NAME = "eventbinder-client"
_DAYS = "3650"
#: Brokers configure in parallel threads; one of them makes the files.
_making = threading.Lock()
_CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


class Authority:
    """Paths of the generated files in ``folder`` (STATE/tls)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = folder / "ca.pem"
        self.ca_key = folder / "ca.key"
        self.server = folder / "server.pem"
        self.server_key = folder / "server.key"
        self.client = folder / "client.pem"
        self.client_key = folder / "client.key"
        self.expired_client = folder / "client-expired.pem"
        self.expired_client_key = folder / "client-expired.key"
        self.other_ca = folder / "other-ca.pem"
        self.other_ca_key = folder / "other-ca.key"
        self.other_client = folder / "other-client.pem"
        self.other_client_key = folder / "other-client.key"

    def stamp(self) -> str:
        """A digest of the CA and the server's key and certificate: a broker started with
        other files (the tls folder made anew) runs another configuration, so the
        brokers write it into their configuration and restart on a change."""
        digest = hashlib.sha256()
        for path in (self.ca, self.server, self.server_key):
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"missing")
        return digest.hexdigest()[:16]

    @property
    def complete(self) -> bool:
        return all(
            p.exists()
            for p in (
                self.ca,
                self.server,
                self.server_key,
                self.client,
                self.client_key,
                self.expired_client,
                self.other_ca,
                self.other_client,
            )
        )


def ensure(state: Path) -> Authority:
    """The authority in ``state/tls``, made now if any file is missing."""
    with _making:
        authority = Authority(state / "tls")
        if not authority.complete:
            _make(authority)
        return authority


def _make(authority: Authority) -> None:
    ensure_dirs(authority.folder)
    _self_signed(authority.ca, authority.ca_key, "eventbinder throwaway test CA")
    _self_signed(authority.other_ca, authority.other_ca_key, "an unrelated CA")
    _signed(
        authority,
        authority.server,
        authority.server_key,
        SERVER_NAME,
        extensions=f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth",
    )
    _signed(authority, authority.client, authority.client_key, CLIENT_NAME)
    _signed(
        authority,
        authority.other_client,
        authority.other_client_key,
        CLIENT_NAME,
        ca=(authority.other_ca, authority.other_ca_key),
    )
    _expired(authority)
    for path in authority.folder.iterdir():
        if path.suffix in (".pem", ".key"):
            secret = path in (authority.ca_key, authority.other_ca_key)
            path.chmod(0o600 if secret else 0o644)


_LOG_NAME = "openssl.log"


def _openssl(*args: str, what: str, log: Path) -> None:
    if run(["openssl", *args], log=log, timeout=60) != 0:
        tail = log.read_text(errors="replace").strip()[-500:] if log.exists() else ""
        raise BrokerError(f"tls: openssl could not {what}: {tail}")


def _self_signed(cert: Path, key: Path, name: str) -> None:
    log = cert.parent / _LOG_NAME
    _openssl(
        "req", "-x509", *_CURVE, "-nodes", "-days", _DAYS, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
        what=f"make the CA {cert.name}", log=log,
    )  # fmt: skip


def _request(key: Path, name: str, folder: Path) -> Path:
    csr = folder / f"{key.stem}.csr"
    log = key.parent / _LOG_NAME
    _openssl(
        "req", "-new", *_CURVE, "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(csr),
        what=f"make the key {key.name}", log=log,
    )  # fmt: skip
    return csr


def _signed(
    authority: Authority,
    cert: Path,
    key: Path,
    name: str,
    *,
    extensions: str = "extendedKeyUsage=clientAuth",
    ca: tuple[Path, Path] | None = None,
) -> None:
    ca_cert, ca_key = ca or (authority.ca, authority.ca_key)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        csr = _request(key, name, folder)
        ext = folder / "ext.cnf"
        ext.write_text(extensions + "\n")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-CAserial", str(folder / "serial"), "-days", _DAYS,
            "-sha256", "-extfile", str(ext), "-out", str(cert),
            what=f"sign {cert.name}", log=cert.parent / _LOG_NAME,
        )  # fmt: skip


def _expired(authority: Authority) -> None:
    """A client certificate whose validity ended in 2020 (``openssl ca`` can backdate)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        csr = _request(authority.expired_client_key, CLIENT_NAME, folder)
        (folder / "index.txt").write_text("")
        (folder / "serial").write_text("1000\n")
        config = folder / "ca.cnf"
        config.write_text(
            "[ca]\ndefault_ca = throwaway\n"
            f"[throwaway]\ndir = {folder}\ndatabase = {folder}/index.txt\n"
            f"new_certs_dir = {folder}\nserial = {folder}/serial\ndefault_md = sha256\n"
            "policy = anything\nunique_subject = no\nx509_extensions = client\n"
            "[anything]\ncommonName = supplied\n"
            "[client]\nextendedKeyUsage = clientAuth\n"
        )
        _openssl(
            "ca", "-batch", "-config", str(config), "-cert", str(authority.ca),
            "-keyfile", str(authority.ca_key), "-in", str(csr),
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
            "-notext", "-out", str(authority.expired_client),
            what="make the expired client certificate", log=authority.folder / _LOG_NAME,
        )  # fmt: skip
    os.chmod(authority.expired_client, 0o644)
