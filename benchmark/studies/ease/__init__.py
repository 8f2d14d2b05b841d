"""Ease-of-use study: install, import, dependencies, adapter size, code signals (``measure``).

The names here are what the study writes and the report reads (importable without running
anything).
"""

CSV_FILE = "ease_of_use.csv"
