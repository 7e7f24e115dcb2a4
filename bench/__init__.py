"""ocscan's benchmark harness: ``python -m bench`` (``make bench``) writes BENCHMARKS.md."""
