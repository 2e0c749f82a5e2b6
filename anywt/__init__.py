"""anywt: WebTransport for Python on any async framework and any QUIC stack."""

from __future__ import annotations

from pkgutil import extend_path

# core/ and backends/ install as anywt.core and anywt.backends.  When this file
# is imported from a source checkout (e.g. ``python -m anywt`` in the
# repository root), let the installed copy supply those subpackages.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"

__all__ = ["__version__"]
