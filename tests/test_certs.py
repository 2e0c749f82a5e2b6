"""anywt.certs: the certificate shape Chromium's serverCertificateHashes accepts."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from anywt.certs import DevCertificate, certificate_sha256, generate_dev_certificate


@pytest.fixture(scope="module")
def cert() -> DevCertificate:
    return generate_dev_certificate()


def test_ecdsa_p256_x509v3(cert: DevCertificate) -> None:
    parsed = x509.load_pem_x509_certificate(cert.cert_pem)
    assert parsed.version is x509.Version.v3
    key = parsed.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    private = serialization.load_pem_private_key(cert.key_pem, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == key.public_numbers()


def test_validity_backdated_and_within_14_days(cert: DevCertificate) -> None:
    parsed = x509.load_pem_x509_certificate(cert.cert_pem)
    now = dt.datetime.now(dt.UTC)
    assert parsed.not_valid_before_utc == cert.not_before
    assert parsed.not_valid_after_utc == cert.not_after
    assert cert.not_before < now - dt.timedelta(seconds=30)
    assert cert.not_after - cert.not_before == dt.timedelta(days=13)


@pytest.mark.parametrize("days", [1, 14])
def test_validity_bounds_accepted(days: int) -> None:
    c = generate_dev_certificate(validity_days=days)
    assert c.not_after - c.not_before == dt.timedelta(days=days)


@pytest.mark.parametrize("days", [0, 15, -1, True, 1.5])
def test_validity_out_of_range_rejected(days: object) -> None:
    with pytest.raises(ValueError):
        generate_dev_certificate(validity_days=days)  # type: ignore[arg-type]


def test_empty_hosts_rejected() -> None:
    with pytest.raises(ValueError):
        generate_dev_certificate(())


def test_subject_alt_names() -> None:
    c = generate_dev_certificate(("127.0.0.1", "::1", "localhost", "example.test"))
    san = (
        x509.load_pem_x509_certificate(c.cert_pem)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "example.test"]


def test_hashes(cert: DevCertificate) -> None:
    parsed = x509.load_pem_x509_certificate(cert.cert_pem)
    der = parsed.public_bytes(serialization.Encoding.DER)
    spki = parsed.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert cert.sha256 == hashlib.sha256(der).digest()
    assert cert.sha256_hex == hashlib.sha256(der).hexdigest()
    assert cert.spki_sha256 == hashlib.sha256(spki).digest()
    assert base64.b64decode(cert.spki_sha256_b64) == cert.spki_sha256
    assert certificate_sha256(cert.cert_pem) == cert.sha256
    assert certificate_sha256(der) == cert.sha256


def test_certificate_sha256_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        certificate_sha256(b"not a certificate")


def test_js_hashes(cert: DevCertificate) -> None:
    js = cert.js_hashes()
    match = re.fullmatch(
        r'\[\{algorithm: "sha-256", value: new Uint8Array\(\[([0-9, ]+)\]\)\}\]', js
    )
    assert match is not None
    assert bytes(int(b) for b in match.group(1).split(", ")) == cert.sha256


def test_write(cert: DevCertificate, tmp_path: Path) -> None:
    target = tmp_path / "sub"
    certfile, keyfile = cert.write(target)
    assert certfile.read_bytes() == cert.cert_pem
    assert keyfile.read_bytes() == cert.key_pem
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    # Rewriting over a looser file still ends at 0600.
    keyfile.chmod(0o644)
    cert.write(target)
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600


def test_frozen(cert: DevCertificate) -> None:
    with pytest.raises(AttributeError):
        cert.sha256 = b""  # type: ignore[misc]
