"""Benchmarks of the booking service against the local stack: ``python -m bench`` (``make bench``).

See ``bench/README.md`` for what each part measures and how.
"""
