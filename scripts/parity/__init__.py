"""Reference-fixture checks, one module per fixture family.

Each family module exposes `check(path) -> common.FileResult` and the case
grammar of its file (compiled patterns), which the tests share. The driver
is `scripts/check_parity.py`.
"""
