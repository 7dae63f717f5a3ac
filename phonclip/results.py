"""Results as tables: one arm's ``results.md`` and the side-by-side table of an ablation's arms."""

from __future__ import annotations

from typing import Any


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a/b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def to_markdown(results: dict[str, Any]) -> str:
    """One arm's results: a metric table, then data quality."""
    lines = [
        f"# {results['experiment']} / {results['arm']}",
        "",
        f"date {results['date']} · steps {results['steps']} · train seconds {_fmt(results.get('train_seconds'))}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in flatten(results["metrics"]).items()]
    quality = flatten(results.get("data_quality", {}))
    if quality:
        lines += ["", "| data quality | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in quality.items()]
    return "\n".join(lines) + "\n"


def side_by_side(per_arm: dict[str, dict[str, Any]]) -> str:
    """Metrics as rows, arms as columns (rows in first-seen order)."""
    flat = {arm: flatten(r.get("metrics", {})) for arm, r in per_arm.items()}
    rows: list[str] = []
    for metrics in flat.values():
        rows += [k for k in metrics if k not in rows]
    arms = list(flat)
    lines = ["| metric | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    lines += [f"| {row} | " + " | ".join(_fmt(flat[a].get(row)) for a in arms) + " |" for row in rows]
    return "\n".join(lines)
