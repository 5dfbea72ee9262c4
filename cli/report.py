"""``volfefe report``: totals, sentiment distribution, high-confidence count. Reads only."""

from __future__ import annotations

import json

from db.existence import require_existing_database
from db.queries import (
    content_counts,
    count_above,
    count_below_margin,
    model_versions,
    sentiment_distribution,
    uncertain_classifications,
)
from db.session import session_scope
from jobs.audit import LOW_MARGIN
from model.model_marks import random_weight_count, random_weights_warning

#: confidence above which a classification counts as high-confidence in the report.
HIGH_CONFIDENCE = 0.9


def build_report(database_url: str) -> dict:
    """The report's figures; DatabaseMissing when a SQLite database does not exist (nothing is created)."""
    require_existing_database(database_url)
    with session_scope(database_url) as session:
        counts = content_counts(session)
        distribution = sentiment_distribution(session)
        high = count_above(session, HIGH_CONFIDENCE)
        versions = model_versions(session)
        uncertain, audited = count_below_margin(session, LOW_MARGIN)
    return {
        "contents": counts.total,
        "classified": counts.classified,
        "skipped": counts.skipped,
        "unclassified": counts.unclassified,
        "classifications": sum(distribution.values()),
        "sentiments": distribution,
        f"confidence_above_{HIGH_CONFIDENCE}": high,
        "model_versions": versions,
        #: audited classifications whose two best scores are within LOW_MARGIN of each other.
        f"margin_below_{LOW_MARGIN}": uncertain,
        "audited_classifications": audited,
        "random_weight_classifications": random_weight_count(versions),
    }


def render_report(report: dict) -> str:
    total = report["classifications"]
    lines = [
        f"contents {report['contents']}: classified {report['classified']}, "
        f"skipped {report['skipped']}, unclassified {report['unclassified']}",
        f"classifications {total}",
    ]
    for sentiment, count in report["sentiments"].items():
        share = 100 * count / total if total else 0.0
        lines.append(f"  {sentiment:<9}{count:>7}  {share:5.1f}%")
    lines.append(f"confidence above {HIGH_CONFIDENCE}: {report[f'confidence_above_{HIGH_CONFIDENCE}']}")
    audited = report["audited_classifications"]
    uncertain = report[f"margin_below_{LOW_MARGIN}"]
    share = 100 * uncertain / audited if audited else 0.0
    lines.append(
        f"uncertain (top two scores within {LOW_MARGIN}): {uncertain} of {audited} audited ({share:.1f}%); "
        "list them with `volfefe report --uncertain`"
    )
    for version, count in report["model_versions"].items():
        lines.append(f"model {version}: {count}")
    lines += random_weights_warning(report["random_weight_classifications"])
    return "\n".join(lines)


def print_report(database_url: str, as_json: bool = False) -> None:
    report = build_report(database_url)
    print(json.dumps(report, indent=2) if as_json else render_report(report))


def print_uncertain(database_url: str, limit: int, as_json: bool = False) -> None:
    """The classifications the model was least sure of, with their margin and text."""
    require_existing_database(database_url)
    with session_scope(database_url) as session:
        rows = [
            {
                "content_id": content.id,
                "sentiment": classification.sentiment,
                "margin": (classification.meta.get("quality") or {}).get("margin"),
                "raw_scores": classification.meta.get("raw_scores"),
                "text": " ".join(content.text.split())[:200],
            }
            for classification, content in uncertain_classifications(session, LOW_MARGIN, limit)
        ]
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        print(f"{row['content_id']}\t{row['sentiment']}\tmargin {row['margin']:.3f}\t{row['text']}")
