"""ws_diag benchmarks: ``python -m benchmarks run`` (see benchmarks/README.md)."""
