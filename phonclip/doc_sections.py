"""Regenerate some ``## `` sections of a docs page and keep the rest as they were measured, so one
experiment or benchmark can be refreshed without rerunning (or losing) every other."""

from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^## (.+)$", re.MULTILINE)


def sections(text: str) -> dict[str, str]:
    """``{title: body}`` of every ``## title`` section (body without the title line), in order."""
    found = list(_HEADER.finditer(text))
    return {m[1].strip(): text[m.end() : found[i + 1].start() if i + 1 < len(found) else len(text)].strip("\n")
            for i, m in enumerate(found)}


def write_merged(path: Path, preamble: str, new: dict[str, str], order: list[str]) -> str:
    """Write ``preamble`` then the sections: ``new`` ones replace (or join) those already in ``path``;
    titles in ``order`` come first, in that order. Returns the text written."""
    kept = sections(path.read_text(encoding="utf-8")) if path.exists() else {}
    merged = {**kept, **new}
    titles = [t for t in order if t in merged] + [t for t in merged if t not in order]
    text = preamble.rstrip("\n") + "\n\n" + "\n\n".join(f"## {t}\n\n{merged[t]}" for t in titles) + "\n"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text
