"""Command-line tools; run as `python scripts/NAME.py`."""
