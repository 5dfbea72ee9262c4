"""``volfefe consensus --refresh``: recompute every content's consensus from its stored classifications.

For after VOLFEFE_MODELS changed weights or dropped a model, or VOLFEFE_AMBIGUOUS_CONFIDENCE changed:
no model runs, the consensus is made again of the configured models' current rows (a page of contents
at a time, each page in its own transaction, its contents locked as a classification job locks them).
A model added to VOLFEFE_MODELS needs classifications first: the hourly sweep backfills them.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import select

from config import Settings
from db.consensus_store import lock_contents, refresh_consensus
from db.existence import require_existing_database
from db.models import Classification, Consensus
from db.session import session_scope

#: contents recomputed per transaction.
PAGE = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="recompute every consensus with the configured models and weights",
    )


def run_consensus_command(config: Settings, args: argparse.Namespace) -> int:
    if not args.refresh:
        print("volfefe consensus: error: say what to do: --refresh", file=sys.stderr)
        return 2
    require_existing_database(config.database_url)
    weights = {spec.name: spec.weight for spec in config.models}
    done = changed = ambiguous = 0
    after = 0
    while True:
        with session_scope(config.database_url) as session:
            ids = _page(session, after)
            if not ids:
                break
            before = dict(
                session.execute(
                    select(Consensus.content_id, Consensus.sentiment).where(Consensus.content_id.in_(ids))
                ).all()
            )
            lock_contents(session, ids)
            verdicts = refresh_consensus(session, ids, weights, config.ambiguous_confidence)
        done += len(verdicts)
        changed += sum(
            1 for content_id, verdict in verdicts.items() if before.get(content_id) != verdict.sentiment
        )
        ambiguous += sum(verdict.ambiguous for verdict in verdicts.values())
        after = ids[-1]
    print(
        f"consensus of {done} contents recomputed with {', '.join(f'{n}:{w:g}' for n, w in weights.items())}: "
        f"{changed} changed sentiment, {ambiguous} ambiguous"
    )
    return 0


def _page(session, after: int) -> list[int]:
    """The next contents (by id) that have a classification or a consensus."""
    with_rows = select(Classification.content_id).where(Classification.content_id > after)
    with_consensus = select(Consensus.content_id).where(Consensus.content_id > after)
    union = with_rows.union(with_consensus).subquery()
    return list(session.scalars(select(union.c.content_id).order_by(union.c.content_id).limit(PAGE)))
