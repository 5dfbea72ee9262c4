"""``volfefe report``: totals, sentiments by model and their consensus, agreement, ambiguous posts, and
what the market did after the posts (``reports.reactions``). Reads only."""

from __future__ import annotations

import json

from config import Settings, settings
from consensus.agreement import pair_agreement
from consensus.vote import METHOD, basis
from db.consensus_queries import ambiguous_posts, consensus_bases, consensus_figures, joint_labels
from db.existence import require_existing_database
from db.queries import (
    content_counts,
    count_above,
    count_below_margin,
    model_versions,
    sentiment_distribution,
    uncertain_classifications,
    unclassified_by_model,
)
from db.session import session_scope
from jobs.audit import LOW_MARGIN
from model.model_marks import random_weight_count, random_weights_warning
from reports.reactions import reactions_section

#: confidence above which a classification counts as high-confidence in the report.
HIGH_CONFIDENCE = 0.9
#: ambiguous posts the report's JSON lists (least confident first), and the text report shows.
AMBIGUOUS_LISTED = 20
AMBIGUOUS_SHOWN = 10


def build_report(database_url: str, config: Settings | None = None) -> dict:
    """The report's figures; DatabaseMissing when a SQLite database does not exist (nothing is created).

    Top level: contents and the consensus (one per content; with one model, that model's reading).
    ``models``: each configured model's figures side by side. ``consensus``: its distribution, the
    ambiguous and disputed posts, and the agreement of each pair of models (Cohen's kappa).
    ``reactions``: what the market did after the posts (``reports.reactions``; every stored record is
    read).
    """
    config = config or settings()
    require_existing_database(database_url)
    names = config.model_names
    with session_scope(database_url) as session:
        counts = content_counts(session, names)
        figures = consensus_figures(session)
        versions = model_versions(session)
        unclassified = unclassified_by_model(session, names)
        models = {}
        for spec in config.models:
            distribution = sentiment_distribution(session, spec.name)
            uncertain, audited = count_below_margin(session, LOW_MARGIN, spec.name)
            models[spec.name] = {
                "source": spec.source,
                "weight": spec.weight,
                "classifications": sum(distribution.values()),
                "unclassified": unclassified[spec.name],
                "sentiments": distribution,
                f"confidence_above_{HIGH_CONFIDENCE}": count_above(session, HIGH_CONFIDENCE, spec.name),
                f"margin_below_{LOW_MARGIN}": uncertain,
                "audited_classifications": audited,
                "model_versions": model_versions(session, spec.name),
            }
        pairs = [
            pair_agreement(first, second, joint_labels(session, first, second)).as_dict()
            for index, first in enumerate(names)
            for second in names[index + 1 :]
        ]
        ambiguous = ambiguous_posts(session, AMBIGUOUS_LISTED)
        bases = consensus_bases(session)
        reactions = reactions_section(session)
    first = models[names[0]]
    return {
        "contents": counts.total,
        "classified": counts.classified,
        "partly_classified": counts.partly,
        "skipped": counts.skipped,
        "unclassified": counts.unclassified,
        "classifications": figures.contents,
        "sentiments": figures.sentiments,
        f"confidence_above_{HIGH_CONFIDENCE}": first[f"confidence_above_{HIGH_CONFIDENCE}"],
        "model_versions": versions,
        #: audited classifications whose two best scores are within LOW_MARGIN of each other.
        f"margin_below_{LOW_MARGIN}": first[f"margin_below_{LOW_MARGIN}"],
        "audited_classifications": first["audited_classifications"],
        "random_weight_classifications": random_weight_count(versions),
        "models": models,
        "consensus": {
            "method": METHOD,
            "contents": figures.contents,
            "sentiments": figures.sentiments,
            "ambiguous": figures.ambiguous,
            "ambiguous_below_confidence": config.ambiguous_confidence,
            "disputed": figures.disputed,
            "mean_agreement": figures.mean_agreement,
            "agreement": pairs,
            "ambiguous_posts": ambiguous,
            "bases": bases,
            "configured_basis": basis({spec.name: spec.weight for spec in config.models}),
        },
        "reactions": reactions,
    }


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:5.1f}%" if total else "    - "


def render_report(report: dict) -> str:
    total = report["classifications"]
    partly = f", partly classified {report['partly_classified']}" if report["partly_classified"] else ""
    lines = [
        f"contents {report['contents']}: classified {report['classified']}{partly}, "
        f"skipped {report['skipped']}, unclassified {report['unclassified']}",
    ]
    models = report["models"]
    several = len(models) > 1
    if several:
        names = list(models)
        lines.append(f"sentiments by model, and their consensus ({report['consensus']['method']}):")
        lines.append(" " * 11 + "".join(f"{name[:14]:>16}" for name in [*names, "consensus"]))
        for sentiment in report["sentiments"]:
            cells = [
                f"{models[name]['sentiments'][sentiment]:>8} {_share(models[name]['sentiments'][sentiment], models[name]['classifications'])}"
                for name in names
            ]
            cells.append(
                f"{report['sentiments'][sentiment]:>8} {_share(report['sentiments'][sentiment], total)}"
            )
            lines.append(f"  {sentiment:<9}" + "".join(cells))
        lines.append(
            "  classified"
            + "".join(f"{models[name]['classifications']:>16}" for name in names)
            + f"{total:>16}"
        )
        lines.append("  missing   " + "".join(f"{models[name]['unclassified']:>16}" for name in names))
    else:
        lines.append(f"classifications {total}")
        for sentiment, count in report["sentiments"].items():
            lines.append(f"  {sentiment:<9}{count:>7}  {_share(count, total)}")
    for name, figures in models.items():
        audited = figures["audited_classifications"]
        uncertain = figures[f"margin_below_{LOW_MARGIN}"]
        prefix = f"{name}: " if several else ""
        lines.append(
            f"{prefix}confidence above {HIGH_CONFIDENCE}: {figures[f'confidence_above_{HIGH_CONFIDENCE}']}"
        )
        lines.append(
            f"{prefix}uncertain (top two scores within {LOW_MARGIN}): {uncertain} of {audited} audited "
            f"({_share(uncertain, audited).strip()}); list them with `volfefe report --uncertain`"
        )
    consensus = report["consensus"]
    if several:
        lines += _agreement_lines(consensus)
    for version, count in report["model_versions"].items():
        lines.append(f"model {version}: {count}")
    other = {
        basis: count for basis, count in consensus["bases"].items() if basis != consensus["configured_basis"]
    }
    for basis_, count in sorted(other.items()):
        lines.append(
            f"consensus of {count} contents made of {basis_}, not of the configured {consensus['configured_basis']}"
            " (a model still to backfill, or VOLFEFE_MODELS changed: `volfefe consensus --refresh`)"
        )
    lines += reaction_lines(report["reactions"])
    lines += random_weights_warning(report["random_weight_classifications"])
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.3f}%"


def reaction_lines(reactions: dict) -> list[str]:
    """A short summary of the ``reactions`` section: per window the hit rate with its interval and the
    mean abnormal return by sentiment, the significant count and the largest move."""
    if not reactions["records"]:
        return [
            "no reactions yet: import prices with volfefe import-prices, then run a worker or volfefe run"
        ]
    statuses = ", ".join(f"{status} {count}" for status, count in reactions["by_status"].items())
    level = reactions["significance_level"]
    lines = [
        f"reactions {reactions['records']} (post, asset, window) of {reactions['posts']} posts: {statuses}; "
        f"significant at p<{level:g}: {reactions['significant']}",
        "  hit rate (the consensus sentiment predicts the sign of the abnormal return; neutral left out):",
    ]
    for window, rate in reactions["hit_rate"].items():
        if not rate["n"]:
            lines.append(f"    {window:<4} no move to judge")
            continue
        low, high = rate["interval"]
        lines.append(
            f"    {window:<4} {rate['hits']} of {rate['n']} = {rate['hit_rate']:.3f}, "
            f"{100 * rate['confidence']:g}% interval {low:.3f}-{high:.3f}"
        )
    lines.append("  mean abnormal return by sentiment (± standard error, posts x assets):")
    for window, by_sentiment in reactions["abnormal_return"].items():
        cells = [
            f"{sentiment} {_percent(figures['mean'])}"
            + ("" if figures["stderr"] is None else f" ± {100 * figures['stderr']:.3f}%")
            + f" ({figures['n']})"
            for sentiment, figures in by_sentiment.items()
        ]
        lines.append(f"    {window:<4} " + ", ".join(cells))
    if reactions["largest_significant_moves"]:
        move = reactions["largest_significant_moves"][0]
        lines.append(
            f"  largest significant move: content {move['content_id']} ({move['sentiment']}) {move['symbol']} "
            f"{move['window']} {_percent(move['abnormal_return'])} abnormal, z {move['z_score']:+.2f}; "
            "all of them: --json (reactions) or --html"
        )
    return lines


def _agreement_lines(consensus: dict) -> list[str]:
    mean = consensus["mean_agreement"]
    lines = [
        f"consensus: {consensus['contents']} contents, mean agreement "
        f"{'-' if mean is None else f'{mean:.3f}'}, disputed {consensus['disputed']} (some model disagrees), "
        f"ambiguous {consensus['ambiguous']} (agreement below half or confidence below "
        f"{consensus['ambiguous_below_confidence']:g})",
        "agreement between models (Cohen's kappa: 1 full, 0 chance):",
    ]
    for pair in consensus["agreement"]:
        first, second = pair["models"]
        if not pair["contents"]:
            lines.append(f"  {first} / {second}: no content classified by both")
            continue
        kappa = "undefined (one label only)" if pair["kappa"] is None else f"{pair['kappa']:.3f}"
        lines.append(
            f"  {first} / {second}: {pair['contents']} contents, agreement {pair['agreement']:.3f}, kappa {kappa}"
        )
    for post in consensus["ambiguous_posts"][:AMBIGUOUS_SHOWN]:
        readings = ", ".join(
            f"{name} {reading['sentiment']} {reading['confidence']:.2f}"
            for name, reading in post["models"].items()
        )
        text = " ".join(post["text"].split())[:100]
        lines.append(
            f"  ambiguous {post['content_id']}: {post['sentiment']} {post['confidence']:.2f} ({readings}) {text}"
        )
    return lines


def print_report(database_url: str, as_json: bool = False, config: Settings | None = None) -> None:
    report = build_report(database_url, config)
    print(json.dumps(report, indent=2) if as_json else render_report(report))


def print_uncertain(database_url: str, limit: int, as_json: bool = False, model: str | None = None) -> None:
    """The classifications ``model`` (default: the first configured) was least sure of, with their
    margin and text."""
    model = settings().model_spec(model).name if model else settings().model_names[0]
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
            for classification, content in uncertain_classifications(session, LOW_MARGIN, limit, model)
        ]
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        print(f"{row['content_id']}\t{row['sentiment']}\tmargin {row['margin']:.3f}\t{row['text']}")
