"""Certificate checks inside aiopquic's TLS handshake: pinning by hash, readable failures.

aiopquic (picoquic + picotls + OpenSSL) offers a client three choices: no
verification, or chain and name verification against one PEM file of
roots.  It never shows the server's certificate to Python, so the
certificate pinning the other backends do (``server_certificate_hashes``,
the SHA-256 of the DER certificate, like browsers' serverCertificateHashes)
cannot be checked after the handshake, and a refused certificate only
surfaces as "the connection closed".

picotls' OpenSSL verifier has a documented extension point for exactly
this: ``ptls_openssl_verify_certificate_t.override_callback`` is called
with the result of the chain verification and the leaf certificate, and its
return value replaces that result.  picotls then still checks the
handshake signature (CertificateVerify) with the leaf's key.  This module
sets that callback on the verifier picoquic creates for one client
context:

* while ``TransportContext.start()`` runs (synchronously, on this thread),
  picoquic's factory of verifiers (the exported global
  ``picoquic_get_certificate_verifier_fn``) is replaced by a wrapper that
  calls the original and, for the one root file this module wrote or was
  given, sets ``override_callback``;
* the wrapper checks the verifier's layout first (its callback, algorithm
  list and certificate store set, no override yet); anything unexpected
  leaves it untouched and ``CertificateCheck.armed`` stays False, so the
  caller can refuse pinning instead of connecting unchecked;
* the override runs on picoquic's thread (ctypes takes the GIL): with pins
  it accepts exactly the pinned certificates, whatever the chain check said;
  without pins it keeps the chain check's verdict and records why it failed.

This relies on C symbols the aiopquic wheel exports but does not document
(``picoquic_tls_api_init``, ``picoquic_get_certificate_verifier_fn``,
``i2d_X509``, ``X509_verify_cert_error_string``) and on the picotls struct
``ptls_openssl_verify_certificate_t``; ``tests/backends/test_aiopquic.py``
checks right and wrong pins end to end on every run.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALERT_BAD_CERTIFICATE", "CertificateCheck", "TlsHookUnavailable", "verifier_hook"]

logger = logging.getLogger("anywt.backends.aiopquic")

#: TLS alert bad_certificate(42): what a pin mismatch answers.
ALERT_BAD_CERTIFICATE = 42
#: TLS alerts picotls' chain verification returns, by meaning.
_ALERT_NAMES = {
    42: "bad certificate",
    44: "certificate revoked",
    45: "certificate expired",
    48: "unknown certificate authority",
    116: "no certificate",
}

_GetVerifier = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p)
_Override = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,  # the override struct itself
    ctypes.c_void_p,  # ptls_t *
    ctypes.c_int,  # verdict of the chain verification (0 or a TLS alert)
    ctypes.c_int,  # OpenSSL X509_V_ERR_* of the chain verification
    ctypes.c_void_p,  # X509 *leaf (NULL when the server sent none)
    ctypes.c_void_p,  # STACK_OF(X509) *intermediates
)


class _OverrideStruct(ctypes.Structure):
    # ptls_openssl_override_verify_certificate_t: one callback pointer.
    _fields_ = (("cb", _Override),)


class _OpensslVerifier(ctypes.Structure):
    # ptls_openssl_verify_certificate_t: {ptls_verify_certificate_t super
    # = {cb, algos}, X509_STORE *cert_store, override_callback}.
    _fields_ = (
        ("cb", ctypes.c_void_p),
        ("algos", ctypes.c_void_p),
        ("cert_store", ctypes.c_void_p),
        ("override_callback", ctypes.c_void_p),
    )


class TlsHookUnavailable(RuntimeError):
    """The aiopquic build does not expose what the certificate hook needs."""


@dataclass(eq=False)
class CertificateCheck:
    """The certificate policy of one client connection, and what happened.

    With ``pins`` the server's certificate must be one of them (SHA-256 of
    the DER); without, the chain verification decides and ``failure`` says
    why it refused.
    """

    pins: frozenset[bytes] = frozenset()
    #: The override is set on this connection's verifier.
    armed: bool = False
    #: Why the certificate was refused (None while accepted or unchecked).
    failure: str | None = None
    #: The TLS alert sent for a refusal.
    alert: int = 0
    #: SHA-256 of the server's certificate, once seen.
    seen_sha256: bytes | None = None
    _keep: list[Any] = field(default_factory=list, repr=False)

    def decide(self, verdict: int, x509_error: int, der: bytes | None) -> int:
        """The result picotls gets: 0 accepts, a TLS alert refuses."""
        digest = None if der is None else hashlib.sha256(der).digest()
        self.seen_sha256 = digest
        if self.pins:
            if digest is not None and digest in self.pins:
                return 0
            shown = "none" if digest is None else digest.hex()
            self.failure = (
                f"certificate pinning failed: the server certificate (SHA-256 {shown}) is not "
                f"one of the {len(self.pins)} pinned certificate hashes"
            )
            self.alert = ALERT_BAD_CERTIFICATE
            return ALERT_BAD_CERTIFICATE
        if verdict != 0:
            what = _ALERT_NAMES.get(verdict, f"TLS alert {verdict}")
            detail = _HOOK.x509_error_text(x509_error) if _HOOK is not None else ""
            self.failure = f"certificate verification failed: {what}" + (
                f" ({detail})" if detail else ""
            )
            self.alert = verdict
        return verdict


class _VerifierHook:
    """The ctypes side: symbols, the factory wrapper, the override callbacks."""

    def __init__(self) -> None:
        from aiopquic._binding import (  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: PLC0415 - optional, untyped
            _transport,
        )

        try:
            lib = ctypes.CDLL(_transport.__file__)
            init = lib.picoquic_tls_api_init
            self._i2d = lib.i2d_X509
            self._error_string = lib.X509_verify_cert_error_string
            self._slot = ctypes.c_void_p.in_dll(lib, "picoquic_get_certificate_verifier_fn")
        except (OSError, AttributeError, ValueError) as exc:
            raise TlsHookUnavailable(f"aiopquic does not export {exc}") from exc
        init.restype = None
        init.argtypes = []
        self._i2d.restype = ctypes.c_int
        self._i2d.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        self._error_string.restype = ctypes.c_char_p
        self._error_string.argtypes = [ctypes.c_long]
        # Registers picoquic's crypto providers (idempotent), so the factory
        # slot holds OpenSSL's verifier factory from now on.
        init()
        original = self._slot.value
        if not original:
            raise TlsHookUnavailable("picoquic registered no certificate verifier factory")
        self._original_address = original
        self._original = _GetVerifier(original)
        self._wrapper = _GetVerifier(self._make_verifier)
        wrapper_address = ctypes.cast(self._wrapper, ctypes.c_void_p).value
        assert wrapper_address is not None
        self._wrapper_address: int = wrapper_address
        self._lock = threading.Lock()
        self._pending: dict[bytes, CertificateCheck] = {}

    def x509_error_text(self, code: int) -> str:
        if code <= 0:
            return ""
        try:
            text = self._error_string(code)
        except Exception:  # pragma: no cover - defensive
            return f"X509 error {code}"
        return text.decode("ascii", "replace") if text else f"X509 error {code}"

    def _der(self, x509: int) -> bytes | None:
        size = self._i2d(x509, None)
        if size <= 0:
            return None
        buffer = ctypes.create_string_buffer(size)
        cursor = ctypes.c_void_p(ctypes.addressof(buffer))
        if self._i2d(x509, ctypes.byref(cursor)) != size:
            return None
        return buffer.raw

    def _make_verifier(self, root_file: bytes | None, not_empty: int, free_fn: int) -> int | None:
        # Called by picoquic_create (this thread, GIL held through ctypes).
        verifier: int | None = self._original(root_file, not_empty, free_fn)
        check = self._pending.get(root_file or b"")
        if check is None or not verifier:
            return verifier
        view = _OpensslVerifier.from_address(verifier)
        if not view.cb or not view.algos or not view.cert_store or view.override_callback:
            logger.warning("aiopquic's certificate verifier has an unexpected layout; not hooked")
            return verifier
        override = _OverrideStruct(_Override(self._overrider(check)))
        check._keep.append(override)
        view.override_callback = ctypes.addressof(override)
        check.armed = True
        return verifier

    def _overrider(self, check: CertificateCheck) -> Any:
        def override(
            _self: int, _tls: int, verdict: int, x509_error: int, leaf: int | None, _chain: int
        ) -> int:
            # Runs on picoquic's thread, during the handshake.
            try:
                der = self._der(leaf) if leaf else None
                return check.decide(verdict, x509_error, der)
            except BaseException:  # never let an exception cross into C
                check.failure = "certificate check failed inside the TLS handshake"
                check.alert = ALERT_BAD_CERTIFICATE
                return ALERT_BAD_CERTIFICATE

        return override

    @contextmanager
    def installed(self, root_file: str, check: CertificateCheck) -> Iterator[None]:
        """Hook the verifier picoquic makes for ``root_file`` while the block runs."""
        key = root_file.encode()
        with self._lock:
            self._pending[key] = check
            self._slot.value = self._wrapper_address
            try:
                yield
            finally:
                self._slot.value = self._original_address
                del self._pending[key]


_HOOK: _VerifierHook | None = None
_HOOK_ERROR: str | None = None


def verifier_hook() -> _VerifierHook:
    """The process's hook (made at first use); ``TlsHookUnavailable`` if it cannot be."""
    global _HOOK, _HOOK_ERROR  # noqa: PLW0603 - one hook per process
    if _HOOK is not None:
        return _HOOK
    if _HOOK_ERROR is not None:
        raise TlsHookUnavailable(_HOOK_ERROR)
    try:
        _HOOK = _VerifierHook()
    except TlsHookUnavailable as exc:
        _HOOK_ERROR = str(exc)
        raise
    return _HOOK
