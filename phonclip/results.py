"""Results as tables: one arm's ``results.md`` and the side-by-side table of an ablation's arms.

Metrics arrive nested as ``{test_set: {metric_path...: value}}``. A value whose sibling key is
``chance_<name>`` is shown as ``value (chance)``, so every number is read against its chance level.
``per_language`` sub-trees get their own table (languages as rows).
"""

from __future__ import annotations

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


def metric_tables(metrics: dict[str, Any]) -> list[str]:
    """Test sets as rows (metrics as columns), then a per-language table when there is one."""
    main: dict[str, dict[str, str]] = {}
    languages: dict[str, dict[str, str]] = {}
    for test_set, tree in metrics.items():
        if not isinstance(tree, dict):
            main[test_set] = {"value": _fmt(tree)}
            continue
        per_lang = tree.get("per_language", {})
        main[test_set] = with_chance(flatten({k: v for k, v in tree.items() if k != "per_language"}))
        for lang, cells in per_lang.items():
            languages[f"{lang} ({test_set})"] = with_chance(flatten(cells))
    lines = _table(main, "test set")
    if languages:
        lines += ["", "Per language (each language's own gallery):", ""] + _table(languages, "language")
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


def side_by_side(per_arm: dict[str, dict[str, Any]]) -> str:
    """Every metric as a row, arms as columns (per-language rows left to each arm's results.md)."""
    flat = {}
    for arm, results in per_arm.items():
        metrics = results.get("metrics", {})
        trimmed = {k: ({kk: vv for kk, vv in v.items() if kk != "per_language"} if isinstance(v, dict) else v)
                   for k, v in metrics.items()}
        flat[arm] = with_chance(flatten(trimmed))
    rows: list[str] = []
    for cells in flat.values():
        rows += [k for k in cells if k not in rows]
    arms = list(flat)
    lines = ["| metric | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    lines += [f"| {row} | " + " | ".join(flat[a].get(row, "") for a in arms) + " |" for row in rows]
    return "\n".join(lines)
