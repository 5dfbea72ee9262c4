"""Precision and recall of entity linking on hand-written posts (tests/fixtures/entities_posts.jsonl),
and the share of the sample posts that name an asset (the figures entities/README.md gives).

Each post lists the assets a reader expects it to name (symbols of the default list; ``[]`` for a
post that names none, which gets the default link). Scores are micro-averaged over the posts: a
true positive is an expected symbol found, a false positive a symbol found but not expected. The
default link is not counted: it is what a post gets when nothing is found.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from entities import EntityExtractor, load_assets
from entities.settings import DEFAULT_ASSETS_FILE

POSTS = Path(__file__).parent / "fixtures" / "entities_posts.jsonl"
SAMPLE_POSTS = Path(__file__).resolve().parent.parent / "data" / "sample_posts.csv"
README = Path(__file__).resolve().parent.parent / "entities" / "README.md"
#: least precision and recall (0-1) the rules must keep on the posts.
MIN_PRECISION = 0.9
MIN_RECALL = 0.8
#: traps the set must hold (words from the posts' "why"), so that it cannot lose them unnoticed.
TRAPS = ("apple pie", "a person named Ford", "$5 billion", "US and apple inside a URL", "lower-case meta")


def score(posts: list[dict], extractor: EntityExtractor) -> tuple[int, int, int, list[str]]:
    true_positives = false_positives = false_negatives = 0
    misses = []
    for post in posts:
        found = {link.symbol for link in extractor.entities(post["text"]).links if link.method != "default"}
        expected = set(post["expected"])
        true_positives += len(found & expected)
        false_positives += len(found - expected)
        false_negatives += len(expected - found)
        if found != expected:
            misses.append(f"{post['text'][:70]!r}: found {sorted(found)}, expected {sorted(expected)}")
    return true_positives, false_positives, false_negatives, misses


def test_precision_and_recall_on_hand_written_posts() -> None:
    posts = [json.loads(line) for line in POSTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(posts) >= 50
    whys = " | ".join(post["why"] for post in posts)
    assert all(trap in whys for trap in TRAPS)
    extractor = EntityExtractor(load_assets([DEFAULT_ASSETS_FILE]))
    for post in posts:  # an expected symbol is in the list, or the post writes it as a cashtag
        assert all(symbol in extractor.assets or f"${symbol}" in post["text"] for symbol in post["expected"])
    true_positives, false_positives, false_negatives, misses = score(posts, extractor)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    print(
        f"\nentities on {len(posts)} hand-written posts: precision {precision:.3f} "
        f"({true_positives}/{true_positives + false_positives}), recall {recall:.3f} "
        f"({true_positives}/{true_positives + false_negatives})"
    )
    for miss in misses:
        print("  miss:", miss)
    assert precision >= MIN_PRECISION, misses
    assert recall >= MIN_RECALL, misses
    readme = README.read_text(encoding="utf-8")
    assert f"{len(posts)} posts" in readme
    assert f"precision **{precision:.3f}** ({true_positives}/{true_positives + false_positives})" in readme
    assert f"recall **{recall:.3f}** ({true_positives}/{true_positives + false_negatives})" in readme


def test_share_of_sample_posts_that_name_an_asset_is_the_one_the_readme_gives() -> None:
    with SAMPLE_POSTS.open(newline="", encoding="utf-8") as handle:
        raws = [row["text"] for row in csv.DictReader(handle)]
    extractor = EntityExtractor(load_assets([DEFAULT_ASSETS_FILE]))
    named = sum(not entities.is_default for entities in extractor.entities_of_posts(raws))
    print(
        f"\n{named} of the {len(raws)} sample posts get an asset besides the default ({named / len(raws):.0%})"
    )
    assert f"**{named} of the {len(raws)}** posts ({named / len(raws):.0%})" in README.read_text(
        encoding="utf-8"
    )
