"""Deploying a stage to AWS or an emulated account: ``python -m tools.deploy`` (tools/deploy/cli.py)."""
