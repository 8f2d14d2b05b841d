"""The stages every run goes through: ``data`` (and ``shifts``) -> ``backbones`` (``zoo``) ->
``features`` (one cached forward pass per split) -> ``metrics``."""
