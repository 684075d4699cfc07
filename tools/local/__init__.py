"""The local stack: MiniStack, ``chalice local``, the pollers Lambda would be. ``python -m tools.local`` runs it."""
