"""Results as tables: one arm's ``results.md`` and the side-by-side table of an ablation's arms.

Metrics arrive nested as ``{test_set: {metric_path...: value}}``. A value whose sibling key is
``chance_<name>`` is shown as ``value (chance)``, so every number is read against its chance level.
Branches of conditions (``per_language``, noise conditions, substitution rates) get their own tables.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

CHANCE_PREFIX = "chance_"


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


def with_chance(flat: dict[str, Any]) -> dict[str, str]:
    """Formatted metrics with each chance level folded into its metric's cell."""
    cells = {}
    for key, value in flat.items():
        head, _, leaf = key.rpartition("/")
        if leaf.startswith(CHANCE_PREFIX):
            continue
        chance = flat.get(f"{head}/{CHANCE_PREFIX}{leaf}" if head else f"{CHANCE_PREFIX}{leaf}")
        cells[key] = _fmt(value) + (f" ({_fmt(chance)})" if chance is not None else "")
    return cells


def _table(rows: dict[str, dict[str, str]], first: str) -> list[str]:
    columns: list[str] = []
    for cells in rows.values():
        columns += [c for c in cells if c not in columns]
    lines = [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(cells.get(c, "") for c in columns) + " |" for name, cells in rows.items()]
    return lines


TABLE_TITLES = {"per_language": "Per language (each language's own gallery):"}


def _is_condition_table(value: Any) -> bool:
    """A branch of rows that all share one shape (languages, noise conditions): a table of its own."""
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())


def metric_tables(metrics: dict[str, Any]) -> list[str]:
    """Test sets as rows (metrics as columns); then one table per branch of conditions (``per_language``,
    a model's noise conditions, ...) with ``condition (test set)`` as rows."""
    main: dict[str, dict[str, str]] = {}
    branches: dict[str, dict[str, dict[str, str]]] = {}
    for test_set, tree in metrics.items():
        if not isinstance(tree, dict):
            main[test_set] = {"value": _fmt(tree)}
            continue
        main[test_set] = with_chance(flatten({k: v for k, v in tree.items() if not _is_condition_table(v)}))
        for branch, rows in tree.items():
            if _is_condition_table(rows):
                for condition, cells in rows.items():
                    branches.setdefault(branch, {})[f"{condition} ({test_set})"] = with_chance(flatten(cells))
    lines = _table(main, "test set")
    for branch, rows in branches.items():
        lines += ["", TABLE_TITLES.get(branch, f"{branch}:"), ""] + _table(rows, branch.replace("_", " "))
    return lines


def to_markdown(results: dict[str, Any]) -> str:
    """One arm's results: metric tables (chance in parentheses), then data quality."""
    lines = [
        f"# {results['experiment']} / {results['arm']}",
        "",
        f"date {results['date']} · steps {results['steps']} · train seconds {_fmt(results.get('train_seconds'))}",
        "",
        "Values in parentheses are chance levels.",
        "",
        *metric_tables(results["metrics"]),
    ]
    quality = flatten(results.get("data_quality", {}))
    if quality:
        lines += ["", "| data quality | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in quality.items()]
    return "\n".join(lines) + "\n"


def side_by_side(per_arm: dict[str, dict[str, Any]], keep: Sequence[str] = ("*",)) -> str:
    """Every metric (or those matching a ``keep`` glob) as a row, arms as columns (per-language rows left to
    each arm's results.md)."""
    flat = {}
    for arm, results in per_arm.items():
        metrics = results.get("metrics", {})
        trimmed = {k: ({kk: vv for kk, vv in v.items() if kk != "per_language"} if isinstance(v, dict) else v)
                   for k, v in metrics.items()}
        flat[arm] = {k: v for k, v in with_chance(flatten(trimmed)).items()
                     if any(fnmatch.fnmatchcase(k, pattern) for pattern in keep)}
    rows: list[str] = []
    for cells in flat.values():
        rows += [k for k in cells if k not in rows]
    arms = list(flat)
    lines = ["| metric | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    lines += [f"| {row} | " + " | ".join(flat[a].get(row, "") for a in arms) + " |" for row in rows]
    return "\n".join(lines)
