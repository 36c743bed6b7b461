"""HTTPS for the Redfish service: certificates and TLS contexts.

A node either names its own certificate and key (`redfish.tls.cert` / `.key`), or gets one the
emulator makes: a small lab CA (kept in the certificate directory, the key 0600) signs one
certificate per distinct set of names, so a client trusts every BMC of a lab at once with
`verify=ca.pem` (curl `--cacert`, sushy `verify=`), as with a site's own CA. The names of a
generated certificate are the node's address (if it binds one), `localhost`, 127.0.0.1, ::1, the
host's names, and any `redfish.tls.names` given.

Contexts are made when a node's first TLS connection arrives and shared by every node with the
same certificate: 1,000 BMCs on one address share one context; 10,000 BMCs on their own
addresses make a certificate and a context each, only for the ones a client reaches.

Keys are EC P-256: making one costs well under a millisecond (an RSA key costs ~50 ms).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
LEAF_KEY = "server-key.pem"
#: what a generated server certificate is valid for (browsers refuse more than 825 days)
LEAF_DAYS = 825
CA_DAYS = 3650


class TlsError(OSError):
    """A certificate or key cannot be read, made or used; the message names the file.

    An OSError, as a port that cannot be bound is: whoever starts the server reports both
    the same way (bmc/serve.py: "cannot start the Redfish server: ...")."""


@dataclass(frozen=True)
class TlsSettings:
    """One node's HTTPS: its own certificate and key, or one the emulator makes."""

    cert: str | None = None
    key: str | None = None
    #: extra names (DNS names or IP addresses) a generated certificate is valid for
    names: tuple[str, ...] = ()
    #: a plain-HTTP request on the HTTPS port gets a 308 to https:// (False: a 400 saying so)
    redirect_http: bool = True
    #: the node's bound address: a generated certificate names it (wildcards are not names)
    address: str = field(default="", compare=False)


def default_directory(state_dir: str | None) -> Path:
    """Where generated certificates live: `STATE_DIR/tls`, else the user's state directory."""
    if state_dir:
        return Path(state_dir) / "tls"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".local", "state")
    return Path(base) / "bmc-emulator" / "tls"


@functools.cache
def host_names() -> tuple[str, ...]:
    """localhost and this host's names. Asked once: getfqdn() may wait for DNS, and contexts
    are looked up by name in the server's one loop thread, on every TLS connection."""
    names = ["localhost"]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return tuple(names)


class CertificateAuthority:
    """The lab CA in `directory`: made on first use, read afterwards, signing server certs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._ca: tuple[object, object] | None = None  # (certificate, private key)
        self._leaf_key: object | None = None

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_CERT

    def ensure(self) -> Path:
        """Read (or make) the CA now, so a broken directory stops the start, not a client."""
        with self._lock:
            self._load_or_make()
        return self.ca_path

    def server_certificate(self, names: list[str]) -> tuple[Path, Path]:
        """(certificate, key) files of a server certificate valid for `names`."""
        digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
        path = self.directory / f"server-{digest}.pem"
        with self._lock:
            ca_cert, ca_key = self._load_or_make()
            key_path = self.directory / LEAF_KEY
            if path.exists() and self._still_good(path, ca_cert):
                return path, key_path
            key = self._server_key(key_path)
            self._write(path, _server_cert(names, key, ca_cert, ca_key), private=False)
        log.info("Redfish TLS: made a certificate for %s (%s)", ", ".join(names), path)
        return path, key_path

    # -- files ----------------------------------------------------------------------------------
    def _load_or_make(self) -> tuple[object, object]:
        if self._ca is not None:
            return self._ca

        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise TlsError(f"TLS directory {self.directory}: {exc.strerror or exc}") from exc
        # several emulators may share the directory (shards of one fleet on one host): one
        # makes the CA, the others read it, never a key of one with a certificate of another
        with _directory_lock(self.directory):
            self._ca = self._read_or_make()
        return self._ca

    def _read_or_make(self) -> tuple[object, object]:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_path, key_path = self.directory / CA_CERT, self.directory / CA_KEY
        if cert_path.exists() or key_path.exists():
            try:
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (OSError, ValueError, TypeError) as exc:
                raise TlsError(f"TLS CA {cert_path} / {key_path}: cannot read: {exc} (remove "
                               "both to make a new CA)") from exc
            return cert, key
        key = _new_key()
        cert = _ca_cert(key)
        self._write(key_path, _key_pem(key), private=True)
        self._write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
        log.info("Redfish TLS: made a lab CA: trust %s to verify every BMC here", cert_path)
        return cert, key

    def _server_key(self, path: Path) -> object:
        if self._leaf_key is not None:
            return self._leaf_key
        from cryptography.hazmat.primitives import serialization

        with _directory_lock(self.directory):  # one key, whoever makes it first
            if path.exists():
                try:
                    self._leaf_key = serialization.load_pem_private_key(path.read_bytes(), None)
                except (OSError, ValueError, TypeError) as exc:
                    raise TlsError(f"TLS key {path}: cannot read: {exc}") from exc
            else:
                self._leaf_key = _new_key()
                self._write(path, _key_pem(self._leaf_key), private=True)
        return self._leaf_key

    @staticmethod
    def _still_good(path: Path, ca_cert: object) -> bool:
        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            return False
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        return bool(cert.issuer == ca_cert.subject  # type: ignore[attr-defined]
                    and cert.not_valid_after_utc > soon)

    @staticmethod
    def _write(path: Path, data: bytes, private: bool) -> None:
        """Write atomically (a crash leaves the old file or the new one, never half)."""
        temp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600 if private else 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except OSError as exc:
            raise TlsError(f"TLS file {path}: cannot write: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive lock (flock) on `directory/.lock`, across processes."""
    try:
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise TlsError(f"TLS directory {directory}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _new_key() -> object:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def _ca_cert(key: object) -> object:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bmc-emulator"),
                      x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"bmc-emulator lab CA ({socket.gethostname()})")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()  # type: ignore[attr-defined]
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]


def _server_cert(names: list[str], key: object, ca_cert: object, ca_key: object) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()  # type: ignore[attr-defined]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
            .issuer_name(ca_cert.subject)  # type: ignore[attr-defined]
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)  # type: ignore[attr-defined]
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM)


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context for one certificate: TLS 1.2 and later, the default safe ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise TlsError(f"TLS certificate {exc.filename or cert}: no such file") from exc
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"TLS certificate {cert} / key {key}: cannot use them: "
                       f"{getattr(exc, 'reason', None) or exc}") from exc
    return context


class TlsContexts:
    """The TLS contexts of a server's nodes, made when first needed and shared."""

    def __init__(self, directory: Path) -> None:
        self.authority = CertificateAuthority(directory)
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def check(self, settings: list[TlsSettings]) -> None:
        """Load every named certificate and the CA now: a bad file stops the start."""
        for one in settings:
            if one.cert:
                self.context(one)
        if any(not one.cert for one in settings):
            self.authority.ensure()

    def names(self, settings: TlsSettings) -> list[str]:
        names = list(host_names())
        for extra in ("127.0.0.1", "::1", settings.address, *settings.names):
            if extra and extra not in ("0.0.0.0", "::") and extra not in names:
                names.append(extra)
        if settings.address and settings.address not in ("0.0.0.0", "::"):
            names.remove(settings.address)
            names.insert(0, settings.address)  # the node's own address names it first
        return names

    def context(self, settings: TlsSettings) -> ssl.SSLContext:
        if settings.cert:
            key: tuple[str, ...] = ("file", settings.cert, settings.key or settings.cert)
        else:
            key = ("made", *self.names(settings))
        with self._lock:
            found = self._contexts.get(key)
        if found is not None:
            return found
        if settings.cert:
            made = server_context(settings.cert, settings.key or settings.cert)
        else:
            made = server_context(*self.authority.server_certificate(list(key[1:])))
        with self._lock:
            return self._contexts.setdefault(key, made)
