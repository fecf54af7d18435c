"""Argument checks shared by the figure functions (a ValueError that names the argument)."""
from __future__ import annotations


def mapping(value, name: str, what: str) -> dict:
    """``value`` must be a non-empty dict: ``name`` maps at least one ``what``."""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{name} must map at least one {what}")
    return value


def known_keys(value, given: dict, name: str, what: str) -> dict:
    """``value`` (a dict or None) may only name keys of ``given``; returns it as a dict."""
    value = dict(value or {})
    unknown = set(value) - set(given)
    if unknown:
        raise ValueError(f"{name} names {what} that are not given: {sorted(unknown)}")
    return value
