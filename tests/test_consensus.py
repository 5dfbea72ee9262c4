"""consensus.vote and consensus.agreement against figures worked out by hand, and the report's
``models`` and ``consensus`` sections on a database of three models (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from config import ModelSpec, load_settings
from consensus.agreement import pair_agreement
from consensus.vote import Reading, basis, combine
from db.models import Consensus, Content
from db.session import session_scope
from tests.rows import store_classification


def reading(model: str, scores: dict[str, float], weight: float = 1.0) -> Reading:
    sentiment = max(scores, key=scores.__getitem__)
    return Reading(model, sentiment, scores[sentiment], scores, weight, f"{model}+fp32")


def test_a_two_label_model_has_no_say_on_neutral() -> None:
    finbert = reading("finbert", {"neutral": 0.9, "positive": 0.05, "negative": 0.05})
    sst2 = reading("sst2", {"positive": 0.95, "negative": 0.05})
    verdict = combine([finbert, sst2], ambiguous_below=0.6)
    # By hand: neutral 0.9 (finbert alone), negative (0.05 + 0.05) / 2 = 0.05, positive (0.05 + 0.95) / 2
    # = 0.5; scaled by their sum 1.45.
    assert verdict.sentiment == "neutral"
    assert verdict.scores == pytest.approx(
        {"neutral": 0.9 / 1.45, "negative": 0.05 / 1.45, "positive": 0.5 / 1.45}
    )
    assert verdict.confidence == pytest.approx(0.620690, abs=1e-6)
    assert verdict.margin == pytest.approx((0.9 - 0.5) / 1.45)
    assert verdict.agreement == 0.5 and verdict.dissent == ["sst2"]
    assert verdict.ambiguous is False  # agreement is half (not below), confidence above 0.6
    assert verdict.models["sst2"] == {
        "sentiment": "positive",
        "confidence": 0.95,
        "weight": 1.0,
        "model_version": "sst2+fp32",
    }


def test_weighted_mean_of_three_label_models() -> None:
    readings = [
        reading("a", {"positive": 0.6, "negative": 0.3, "neutral": 0.1}, weight=2),
        reading("b", {"positive": 0.2, "negative": 0.7, "neutral": 0.1}),
        reading("c", {"positive": 0.35, "negative": 0.55, "neutral": 0.1}),
    ]
    verdict = combine(readings, ambiguous_below=0.6)
    # By hand: positive (2*0.6 + 0.2 + 0.35) / 4 = 0.4375, negative (2*0.3 + 0.7 + 0.55) / 4 = 0.4625,
    # neutral 0.1: negative, though the heaviest model says positive; agreement (1 + 1) / 4 = 0.5.
    assert verdict.sentiment == "negative"
    assert verdict.scores == pytest.approx({"positive": 0.4375, "negative": 0.4625, "neutral": 0.1})
    assert verdict.agreement == pytest.approx(0.5) and verdict.dissent == ["a"]
    assert verdict.ambiguous is True  # confidence 0.4625 < 0.6
    assert combine(readings, ambiguous_below=0.4).ambiguous is False


def test_agreement_below_half_is_ambiguous_whatever_the_confidence() -> None:
    readings = [
        reading("a", {"positive": 0.99, "negative": 0.005, "neutral": 0.005}),
        reading("b", {"positive": 0.01, "negative": 0.98, "neutral": 0.01}),
        reading("c", {"positive": 0.01, "negative": 0.01, "neutral": 0.98}),
    ]
    verdict = combine(readings, ambiguous_below=0.0)
    assert verdict.agreement == pytest.approx(1 / 3) and verdict.ambiguous is True


def test_one_model_is_its_own_consensus() -> None:
    verdict = combine([reading("finbert", {"neutral": 0.2, "positive": 0.7, "negative": 0.1})], 0.6)
    assert (verdict.sentiment, verdict.confidence, verdict.agreement, verdict.ambiguous) == (
        "positive",
        0.7,
        1.0,
        False,
    )
    assert verdict.basis == "finbert:1" == basis({"finbert": 1.0})


def test_ties_go_to_the_cautious_label() -> None:
    verdict = combine([reading("a", {"positive": 0.5, "neutral": 0.5})], 0.6)
    assert verdict.sentiment == "neutral"
    with pytest.raises(ValueError):
        combine([], 0.6)


def test_cohens_kappa_by_hand() -> None:
    joint = {("positive", "positive"): 4, ("negative", "negative"): 3, ("neutral", "neutral"): 1}
    joint |= {("positive", "negative"): 1, ("neutral", "positive"): 1}
    pair = pair_agreement("a", "b", joint)
    # p_o = 8/10; marginals a: pos .5 neg .3 neu .2, b: pos .5 neg .4 neu .1;
    # p_e = .25 + .12 + .02 = .39; kappa = (.8 - .39) / (1 - .39) = .41 / .61.
    assert (pair.contents, pair.observed, pair.expected) == (10, pytest.approx(0.8), pytest.approx(0.39))
    assert pair.kappa == pytest.approx(0.41 / 0.61)


def test_kappa_edge_cases() -> None:
    assert pair_agreement("a", "b", {}).kappa is None
    # Both always say the same single label: chance agreement is 1, kappa undefined.
    assert pair_agreement("a", "b", {("neutral", "neutral"): 5}).kappa is None
    # Perfect disagreement on two balanced labels: kappa -1.
    opposite = {("positive", "negative"): 5, ("negative", "positive"): 5}
    assert pair_agreement("a", "b", opposite).kappa == pytest.approx(-1.0)


# -- the report ------------------------------------------------------------------------------------

MODELS = {"tone": 1.0, "roberta": 1.0, "sst2": 0.5}
#: per post: each model's label (a model missing from a post has not classified it).
LABELS = [
    {"tone": "positive", "roberta": "positive", "sst2": "positive"},
    {"tone": "positive", "roberta": "positive", "sst2": "positive"},
    {"tone": "negative", "roberta": "negative", "sst2": "negative"},
    {"tone": "neutral", "roberta": "neutral", "sst2": "positive"},
    {"tone": "neutral", "roberta": "negative", "sst2": "negative"},
    {"tone": "positive", "roberta": "neutral", "sst2": "positive"},
    {"tone": "negative", "roberta": "positive", "sst2": "negative"},
    {"tone": "neutral", "roberta": "neutral"},
]


def scores(label: str, two_labels: bool) -> dict[str, float]:
    if two_labels:
        return (
            {"positive": 0.9, "negative": 0.1} if label == "positive" else {"positive": 0.1, "negative": 0.9}
        )
    return {s: (0.8 if s == label else 0.1) for s in ("positive", "negative", "neutral")}


def kappa_by_hand(pairs: list[tuple[str, str]]) -> float:
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    labels = {a for a, _ in pairs} | {b for _, b in pairs}
    expected = sum(
        (sum(a == label for a, _ in pairs) / n) * (sum(b == label for _, b in pairs) / n) for label in labels
    )
    return (observed - expected) / (1 - expected)


def test_the_reports_agreement_figures_match_a_hand_computation(migrated_db: str) -> None:
    from cli.report import build_report

    config = load_settings(
        {
            "DATABASE_URL": migrated_db,
            "VOLFEFE_MODELS": ",".join(
                f"{name}=/models/{name};weight={weight:g}" for name, weight in MODELS.items()
            ),
        }
    )
    assert config.models[2] == ModelSpec("sst2", "/models/sst2", None, 0.5)
    with session_scope(migrated_db) as session:
        contents = [Content(source="s", external_id=str(i), text=f"post {i}") for i in range(len(LABELS) + 1)]
        session.add_all(contents)
        session.flush()
        for content, labels in zip(contents, LABELS, strict=False):
            for model, label in labels.items():
                two = model == "sst2"
                store_classification(
                    session, content.id, label, 0.9 if two else 0.8, f"{model}+fp32", scores(label, two),
                    model=model, weights=MODELS,
                )  # fmt: skip
        ids = [content.id for content in contents]
    report = build_report(migrated_db, config)

    # tone / roberta on all 8 posts: 5 same labels.
    tone_roberta = [(labels["tone"], labels["roberta"]) for labels in LABELS]
    tone_sst2 = [(labels["tone"], labels["sst2"]) for labels in LABELS if "sst2" in labels]
    pairs = {tuple(pair["models"]): pair for pair in report["consensus"]["agreement"]}
    assert set(pairs) == {("tone", "roberta"), ("tone", "sst2"), ("roberta", "sst2")}
    assert pairs[("tone", "roberta")]["contents"] == 8
    assert pairs[("tone", "roberta")]["agreement"] == pytest.approx(5 / 8)
    assert pairs[("tone", "roberta")]["kappa"] == pytest.approx(kappa_by_hand(tone_roberta))
    assert pairs[("tone", "sst2")]["contents"] == 7
    assert pairs[("tone", "sst2")]["agreement"] == pytest.approx(5 / 7)
    assert pairs[("tone", "sst2")]["kappa"] == pytest.approx(kappa_by_hand(tone_sst2))
    # Worked out once more, fully by hand: tone/roberta marginals tone pos 3 neg 2 neu 3, roberta pos 3
    # neg 2 neu 3 (of 8); p_e = (9 + 4 + 9) / 64 = 22/64; p_o = 5/8; kappa = (40/64 - 22/64) / (42/64).
    assert pairs[("tone", "roberta")]["kappa"] == pytest.approx(18 / 42)

    models = report["models"]
    assert models["tone"]["sentiments"] == {"positive": 3, "negative": 2, "neutral": 3}
    assert models["sst2"]["sentiments"] == {"positive": 4, "negative": 3, "neutral": 0}
    assert models["sst2"]["unclassified"] == 2 and models["tone"]["unclassified"] == 1
    assert (report["contents"], report["classified"], report["partly_classified"]) == (9, 7, 1)

    consensus = report["consensus"]
    assert consensus["contents"] == 8
    with session_scope(migrated_db) as session:
        stored = {row.content_id: row for row in session.query(Consensus)}
    # Post 4 (tone neutral, roberta negative, sst2 negative): by hand, the weighted means are
    # neutral (0.8 + 0.1) / 2 = 0.45 (sst2 has no neutral), negative (0.1 + 0.8 + 0.5*0.9) / 2.5 = 0.54,
    # positive (0.1 + 0.1 + 0.5*0.1) / 2.5 = 0.1; scaled by 1.09: negative 0.4954, ambiguous (< 0.6).
    fifth = stored[ids[4]]
    assert fifth.sentiment == "negative" and fifth.confidence == pytest.approx(0.54 / 1.09)
    assert fifth.agreement == pytest.approx(1.5 / 2.5) and fifth.dissent == ["tone"] and fifth.ambiguous
    listed = {post["content_id"]: post for post in consensus["ambiguous_posts"]}
    assert ids[4] in listed
    assert listed[ids[4]]["models"]["roberta"] == {"sentiment": "negative", "confidence": 0.8}
    assert consensus["ambiguous"] == sum(row.ambiguous for row in stored.values()) == len(listed)
    assert consensus["disputed"] == sum(row.agreement < 1 for row in stored.values())
    assert consensus["configured_basis"] == "tone:1,roberta:1,sst2:0.5"
    assert consensus["bases"] == {"tone:1,roberta:1,sst2:0.5": 7, "tone:1,roberta:1": 1}


def test_consensus_refresh_recomputes_with_the_configured_weights(migrated_db: str, capsys) -> None:
    import argparse

    from cli.consensus import run_consensus_command

    both = {"tone": 1.0, "roberta": 1.0}
    with session_scope(migrated_db) as session:
        content = Content(source="s", external_id="w", text="post")
        session.add(content)
        session.flush()
        # tone says positive at 0.7, roberta negative at 0.8: equal weights, negative wins (0.45 vs 0.40).
        store_classification(session, content.id, "positive", 0.7, "t", {"positive": 0.7, "negative": 0.2,
                             "neutral": 0.1}, model="tone", weights=both)  # fmt: skip
        store_classification(session, content.id, "negative", 0.8, "r", {"positive": 0.1, "negative": 0.8,
                             "neutral": 0.1}, model="roberta", weights=both)  # fmt: skip
        content_id = content.id
    with session_scope(migrated_db) as session:
        assert session.get(Consensus, content_id).sentiment == "negative"
    heavier = load_settings(
        {"DATABASE_URL": migrated_db, "VOLFEFE_MODELS": "tone=/m/t;weight=3,roberta=/m/r"}
    )
    assert run_consensus_command(heavier, argparse.Namespace(refresh=True)) == 0
    # By hand: positive (3*0.7 + 0.1) / 4 = 0.55, negative (3*0.2 + 0.8) / 4 = 0.35.
    with session_scope(migrated_db) as session:
        row = session.get(Consensus, content_id)
        assert (row.sentiment, row.basis) == ("positive", "tone:3,roberta:1")
        assert row.confidence == pytest.approx(0.55)
    assert (
        "consensus of 1 contents recomputed with tone:3, roberta:1: 1 changed sentiment"
        in capsys.readouterr().out
    )


def test_a_consensus_of_rows_this_transaction_wrote_is_not_read_back(migrated_db: str) -> None:
    """The job's path: the rows it wrote are the content's current rows by every configured model, so
    the consensus is made from them without a read; a content with a model's row from before is read.
    Both give the verdict a read of everything gives, to the last bit (the scores go through JSON)."""
    from sqlalchemy import event

    from db.consensus_store import refresh_consensus
    from db.store import NewClassification, save_classifications

    weights = {"tone": 1.0, "roberta": 0.5}
    with session_scope(migrated_db) as session:
        both_now, one_before = (
            Content(source="s", external_id="n", text="a"),
            Content(source="s", external_id="b", text="b"),
        )
        session.add_all([both_now, one_before])
        session.flush()
        a, b = both_now.id, one_before.id
        earlier = NewClassification(
            b, "roberta", "negative", 0.7, "r1", {"negative": 0.7, "neutral": 0.2, "positive": 0.1}
        )
        save_classifications(session, [earlier])

    def row(content_id: int, model: str, scores: dict[str, float]) -> NewClassification:
        label = max(scores, key=scores.__getitem__)
        meta = {"schema": 1, "raw_scores": scores, "processing": {"model": model}}
        return NewClassification(content_id, model, label, scores[label], f"{model}+fp32", scores, meta)

    written = {
        a: [row(a, "tone", {"negative": 0.1, "neutral": 0.3000000000000001, "positive": 0.6}),
            row(a, "roberta", {"negative": 1 / 3, "neutral": 0.1, "positive": 0.5666666666666667})],
        b: [row(b, "tone", {"negative": 0.2, "neutral": 0.45, "positive": 0.35})],
    }  # fmt: skip
    reads: list[list[object]] = []

    def count_reads(_conn, _cursor, statement: str, parameters, _context, _many) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM classifications" in statement:
            values = parameters.values() if isinstance(parameters, dict) else parameters
            reads.append(list(values))

    with session_scope(migrated_db) as session:
        save_classifications(session, [item for items in written.values() for item in items])
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", count_reads)
        try:
            verdicts = refresh_consensus(session, [a, b], weights, 0.6, written=written)
        finally:
            event.remove(engine, "before_cursor_execute", count_reads)
    assert len(reads) == 1 and b in reads[0] and a not in reads[0]
    assert list(verdicts[b].models) == ["tone", "roberta"]  # roberta's row from before
    with session_scope(migrated_db) as session:
        read_back = refresh_consensus(session, [a, b], weights, 0.6)
    assert verdicts == read_back
