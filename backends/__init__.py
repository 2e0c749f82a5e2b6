"""anywt.backends: QUIC stack adapters and the anyio I/O driver."""
