"""Test doubles shared by every test folder: one module per kind of thing they stand in for."""
