"""ECDSA P-256 self-signed certificates for interop tests.

The shape browsers accept for ``serverCertificateHashes`` (ECDSA P-256, valid
for at most 14 days) and that rustls/webpki (pywebtransport's client) accepts
as its own trust anchor via ``--ca``: a leaf with ``CA:FALSE`` and subject
alternative names for the loopback addresses.  Needs ``cryptography``; stands
in until the project ships its own certificate helper.

    python tests/peers/selfsigned.py OUTDIR   # writes OUTDIR/cert.pem, OUTDIR/key.pem
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")


class CertFiles(NamedTuple):
    certfile: Path
    keyfile: Path
    sha256: bytes  # DER certificate digest, as serverCertificateHashes wants


def make_self_signed(
    directory: str | Path,
    *,
    hosts: Iterable[str] = DEFAULT_HOSTS,
    days: int = 10,
    is_ca: bool = False,
    basic_constraints: bool = True,
) -> CertFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hosts = list(hosts)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "anywt-test")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=None), critical=True
        )
    cert = builder.sign(key, hashes.SHA256())
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    return CertFiles(certfile, keyfile, digest)


if __name__ == "__main__":
    out = make_self_signed(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(out.certfile)
    print(out.keyfile)
    print(out.sha256.hex())
