"""Tiny, dependency-free text matching shared by retrieval and the evidence-only analyst."""

from __future__ import annotations

import re

__all__ = ["content_terms"]

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {
        "a", "an", "and", "any", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "has", "have",
        "he", "her", "his", "in", "is", "it", "known", "of", "on", "or", "patient", "she", "that", "the", "their",
        "there", "they", "this", "to", "was", "were", "what", "which", "who", "with", "about",
    }
)  # fmt: skip


def _stem(word: str) -> str:
    """Strip common English inflections so 'headaches' meets 'headache' (not a full stemmer)."""
    if len(word) > 5 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> list[str]:
    """Lower-cased, stop-word-free, lightly stemmed tokens, in order."""
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOP]
