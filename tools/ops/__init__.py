"""Operations on a running stage: ``python -m tools.ops`` (reconcile, redrive, rotate-page-token-key)."""
