"""The fp8conv version: the one place the package reads it from (keep it equal to ``pyproject.toml``'s)."""

__version__ = "0.1.0"
