"""Hypothesis strategies that work with the pip Hypothesis and Debian bookworm's (6.67).

bookworm's Hypothesis predates `characters(codec=..., exclude_*=...)`; its older spelling
(`blacklist_*`) is gone from current releases. The suite runs with both (README: the tests
also run with /usr/bin/python3 against the installed .deb).
"""

from __future__ import annotations

from hypothesis import strategies as st


def utf8_characters(exclude_characters: str = "") -> st.SearchStrategy[str]:
    """Any character UTF-8 can encode (no surrogates), except `exclude_characters`."""
    try:
        return st.characters(codec="utf-8", exclude_characters=exclude_characters)
    except TypeError:       # Hypothesis < 6.84
        return st.characters(blacklist_categories=("Cs",), blacklist_characters=exclude_characters)
