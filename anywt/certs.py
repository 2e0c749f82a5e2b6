"""Short-lived TLS certificates for local development and interop tests.

Browsers only accept a self-signed certificate for WebTransport through the
W3C ``serverCertificateHashes`` option, and Chromium only honours that option
for a certificate that is X.509v3, ECDSA (we use P-256), currently valid and
valid for at most 14 days in total. :func:`generate_dev_certificate` makes
exactly such a certificate, and :class:`DevCertificate` carries the two
fingerprints a test needs:

* :attr:`DevCertificate.sha256`: SHA-256 of the DER certificate, the value
  for ``serverCertificateHashes`` (see :meth:`DevCertificate.js_hashes`);
* :attr:`DevCertificate.spki_sha256`: SHA-256 of the DER SubjectPublicKeyInfo,
  base64-encoded for Chromium's ``--ignore-certificate-errors-spki-list``.

Example::

    cert = generate_dev_certificate()
    certfile, keyfile = cert.write(tmp_path)
    # serve with certfile/keyfile, then in the page:
    # new WebTransport(url, {serverCertificateHashes: <cert.js_hashes()>})

These certificates are for loopback testing only; never use them to protect
real traffic.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "MAX_VALIDITY_DAYS",
    "DevCertificate",
    "certificate_sha256",
    "generate_dev_certificate",
]

#: Longest validity Chromium accepts for ``serverCertificateHashes``.
MAX_VALIDITY_DAYS = 14

# notBefore is moved this far into the past so that a peer whose clock is a
# little behind ours still sees the certificate as valid. The backdating is
# counted in the total validity, which is what Chromium limits.
_BACKDATE = _dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class DevCertificate:
    """A self-signed ECDSA P-256 certificate, its key and its fingerprints."""

    #: The certificate in PEM form.
    cert_pem: bytes
    #: The private key in unencrypted PKCS#8 PEM form.
    key_pem: bytes
    #: SHA-256 of the DER certificate (the ``serverCertificateHashes`` value).
    sha256: bytes
    #: SHA-256 of the DER SubjectPublicKeyInfo (for Chromium's SPKI allow-list).
    spki_sha256: bytes
    #: Start of validity (timezone-aware, UTC).
    not_before: _dt.datetime
    #: End of validity (timezone-aware, UTC).
    not_after: _dt.datetime

    @property
    def sha256_hex(self) -> str:
        """The certificate hash as lower-case hex (for ``--cert-hash`` options)."""
        return self.sha256.hex()

    @property
    def spki_sha256_b64(self) -> str:
        """The SPKI hash in base64, as ``--ignore-certificate-errors-spki-list`` wants."""
        return base64.b64encode(self.spki_sha256).decode("ascii")

    def write(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``cert.pem`` and ``key.pem`` into *directory*.

        The directory is created if needed. The key file is created with mode
        0600 from the start (not chmod-ed afterwards) so the key is never
        readable by others, even briefly.

        Returns:
            ``(certfile, keyfile)``.
        """
        base = Path(directory)
        base.mkdir(parents=True, exist_ok=True)
        certfile = base / "cert.pem"
        keyfile = base / "key.pem"
        certfile.write_bytes(self.cert_pem)
        # O_TRUNC keeps any older file's mode, so enforce 0600 explicitly too.
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, self.key_pem)
        finally:
            os.close(fd)
        return certfile, keyfile

    def js_hashes(self) -> str:
        """A JavaScript expression for the ``serverCertificateHashes`` option.

        Returns e.g. ``[{algorithm: "sha-256", value: new Uint8Array([1, 2, ...])}]``.
        """
        values = ", ".join(str(b) for b in self.sha256)
        return f'[{{algorithm: "sha-256", value: new Uint8Array([{values}])}}]'


def _subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Turn host strings into IP-address or DNS-name SAN entries."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def generate_dev_certificate(
    hosts: Sequence[str] = ("127.0.0.1", "::1", "localhost"),
    *,
    validity_days: int = 13,
) -> DevCertificate:
    """Generate a self-signed ECDSA P-256 certificate for local WebTransport.

    Args:
        hosts: Names to put in the subjectAltName extension. Entries that parse
            as IP addresses become IP SANs, the others DNS SANs. The first one
            is also the subject common name.
        validity_days: Total validity, 1 to 14 days. The default of 13 leaves
            a margin under Chromium's 14-day limit for ``serverCertificateHashes``.

    Raises:
        ValueError: if *validity_days* is outside 1..14 or *hosts* is empty.
    """
    # bool is an int subclass; reject it so a stray flag is not read as 1 day.
    if isinstance(validity_days, bool) or not isinstance(validity_days, int):
        raise ValueError(f"validity_days must be an int, got {validity_days!r}")
    if not 1 <= validity_days <= MAX_VALIDITY_DAYS:
        raise ValueError(
            f"validity_days must be between 1 and {MAX_VALIDITY_DAYS}, got {validity_days}"
        )
    hosts = list(hosts)
    if not hosts:
        raise ValueError("hosts must name at least one host")

    key = ec.generate_private_key(ec.SECP256R1())
    # X.509 has second resolution; drop microseconds so the dataclass fields
    # are exactly what the certificate says.
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    not_before = now - _BACKDATE
    # Total validity (notAfter - notBefore) is what Chromium checks, so the
    # backdating comes out of the requested validity rather than adding to it.
    not_after = not_before + _dt.timedelta(days=validity_days)

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )

    cert_der = cert.public_bytes(serialization.Encoding.DER)
    spki_der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DevCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        sha256=hashlib.sha256(cert_der).digest(),
        spki_sha256=hashlib.sha256(spki_der).digest(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def certificate_sha256(cert_pem_or_der: bytes) -> bytes:
    """SHA-256 of a certificate's DER encoding, given PEM or DER bytes.

    For PEM input with several certificates, the first (the leaf, by
    convention) is hashed, which is the one ``serverCertificateHashes`` checks.

    Raises:
        ValueError: if the bytes are not a certificate.
    """
    data = bytes(cert_pem_or_der)
    if data.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(data)
        der = cert.public_bytes(serialization.Encoding.DER)
    else:
        # Parse to reject garbage, then hash the bytes as given: re-encoding
        # could in theory differ from a non-canonical input encoding.
        x509.load_der_x509_certificate(data)
        der = data
    return hashlib.sha256(der).digest()
