"""Rule ablation report: per language, how many documents each quality rule alone would drop.

The funnel says which rule rejected a document first; that hides a rule that would also have
dropped most of what an earlier rule took. The quality filter lists every rule a document fails
(``quality_rules_failed``), so one aggregation over the filtered stage dataset gives, for each
rule, the documents it fails on its own ("alone") and the ones it actually rejected ("first"),
per language, next to the number of documents that reached the rules. An operator sees at once
which rule is eating a corpus, and what switching it off would bring back (at most "alone").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skycurate.stages.accounting import REJECT_REASON, REJECT_STAGE
from skycurate.stages.web.quality_signals import FAMILIES, RULES_FAILED

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# "gopher_quality: n_words 8 < 50" -> "gopher_quality: n_words"
_RULE_OF_REASON = r"^([a-z0-9_]+: [a-z0-9_]+)"


def rule_ablation(filtered: "DataFrame") -> dict[str, Any]:
    """``{"documents": {lang: n}, "rules": [{"rule", "alone": {lang: n}, "first": {lang: n}}, ...]}``.

    ``documents`` counts the rows that reached the quality rules (not rejected by language ID or
    safety before them); rules are sorted by how many documents they fail alone, most first. Only
    small aggregates reach the driver.
    """
    from pyspark.sql import functions as F

    if RULES_FAILED not in filtered.columns:
        return {"documents": {}, "rules": []}
    lang = F.coalesce(F.col("lang"), F.lit("?")).alias("lang")
    reached = filtered.filter(F.col(RULES_FAILED).isNotNull())
    # One job for the three counts: (kind, lang, rule) rows, unioned, then counted.
    parts = [reached.select(F.lit("documents").alias("kind"), lang, F.lit("").alias("rule")),
             reached.select(F.lit("alone").alias("kind"), lang,
                            F.explode(F.array_distinct(F.col(RULES_FAILED))).alias("rule")),
             reached.filter(F.col(REJECT_STAGE).isin(*FAMILIES))
             .select(F.lit("first").alias("kind"), lang,
                     F.regexp_extract(F.col(REJECT_REASON), _RULE_OF_REASON, 1).alias("rule"))]
    counted = parts[0].unionByName(parts[1]).unionByName(parts[2]).groupBy("kind", "lang", "rule").count().collect()
    documents = {r["lang"]: r["count"] for r in counted if r["kind"] == "documents"}
    rules: dict[str, dict[str, dict[str, int]]] = {}
    for r in counted:
        if r["kind"] != "documents":
            rules.setdefault(r["rule"], {"alone": {}, "first": {}})[r["kind"]][r["lang"]] = r["count"]
    ordered = sorted(rules.items(), key=lambda kv: (-sum(kv[1]["alone"].values()), kv[0]))
    return {"documents": documents, "rules": [{"rule": name, **counts} for name, counts in ordered]}


def ablation_rows(report: dict[str, Any], langs: tuple[str, ...] = ("en", "zh")) -> list[list[str]]:
    """Table rows for printing: rule, then per language 'alone (share) / first'."""
    docs = report.get("documents", {})
    out = []
    for r in report.get("rules", []):
        row = [r["rule"]]
        for lang in langs:
            n, first, total = r["alone"].get(lang, 0), r["first"].get(lang, 0), docs.get(lang, 0)
            share = f" ({100 * n / total:.1f}%)" if total else ""
            row.append(f"{n:,}{share} / {first:,}")
        out.append(row)
    return out
