"""How diagnostics word user input: did-you-mean suggestions and bounded quotes.

Used by the parser and by the later stages alike; kept free of the parser so
that the stages that run after it (`resolve`, `typecheck`) do not load lark.
"""

from __future__ import annotations

from collections.abc import Iterable


def shown(text: str, limit: int = 60) -> str:
    """A user string as a diagnostic quotes it: bounded, so a 64 KiB value stays readable."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _distance(a: str, b: str) -> int:
    """Levenshtein distance, for did-you-mean suggestions."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def closest(word: str, candidates: Iterable[str | None]) -> str | None:
    """The nearest candidate within a third of the word's length, ties by name."""
    best: tuple[int, str] | None = None
    limit = max(1, len(word) // 3 + (1 if len(word) > 3 else 0))
    for cand in sorted(c for c in candidates if c):
        d = _distance(word.lower(), cand.lower())
        if d <= limit and (best is None or d < best[0]):
            best = (d, cand)
    return best[1] if best else None
