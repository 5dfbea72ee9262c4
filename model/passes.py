"""How the windows of one batch are cut into forward passes.

Every row of a pass is padded to the pass's longest, so the windows are sorted by length first. Cut
into passes of ``batch_size`` rows each, the sorted windows of a worker's batch (256 jobs) pad 14.6% of
the shipped headlines' tokens, where the ceiling, which sorts all its texts at once, pads 1.6%
(bench/README.md, "Padding"). The cut chosen here pads the fewest tokens with no more passes than
equal cuts would run, no pass over twice ``batch_size`` rows, and none over ``batch_size`` rows of
the longest window (so no pass is larger than equal cuts' largest): 10.6% for those batches.

An engine may pad every pass to a multiple of a width step (``Engine.width_step``): the cut then
counts the tokens the engine really runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: rows of a pass are a multiple of this (but for a batch's remainder): fewer distinct shapes for
#: the engine to build kernels for.
ROW_STEP = 8

#: the cost of a cut no pass sequence reaches (far above any count of tokens, far below overflow).
_UNREACHED = np.iinfo(np.int64).max // 4


def padded_width(longest: int, width_step: int) -> int:
    """The width of a pass whose longest window has ``longest`` tokens: rounded up to the step."""
    return -(-longest // width_step) * width_step


def plan_passes(
    lengths: Sequence[int], batch_size: int, row_step: int = ROW_STEP, width_step: int = 1
) -> list[list[int]]:
    """Indices into ``lengths`` (token counts), grouped into forward passes in ascending length.

    A dynamic program over the sorted lengths: the fewest padded tokens (rows × the pass's longest,
    summed, widths rounded up to ``width_step``) over at most ``ceil(n / batch_size)`` contiguous passes of at most ``2 × batch_size`` rows
    and ``batch_size ×`` the longest's tokens each (no more than equal cuts' largest pass), every pass
    a multiple of ``row_step`` rows but for the remainder (or ``batch_size`` rows, and its remainder,
    as equal cuts); of equal costs, the fewest rows in the last pass, then the fewest passes.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    count = len(order)
    if count <= batch_size:
        return [order] if order else []
    sorted_lengths = np.array([padded_width(lengths[index], width_step) for index in order], dtype=np.int64)
    most_passes = -(-count // batch_size)
    most_rows = min(2 * batch_size, count)
    budget = batch_size * int(sorted_lengths[-1])
    # A pass of r rows ending at the i-th shortest (i = 1..count) holds r × length[i - 1] tokens and
    # follows a cut covering the i - r shortest: both as (rows, i) matrices, built once.
    step = max(1, min(row_step, batch_size))
    # Equal cuts (batch_size rows and the remainder) are always among the choices: a cut always fits.
    choices = {*range(step, most_rows + 1, step), count % step, batch_size, count % batch_size} - {0}
    allowed = np.array(sorted(choices), dtype=np.int64)
    rows = allowed[:, None]
    ends = np.arange(1, count + 1)[None, :]
    starts = ends - rows
    tokens = rows * sorted_lengths[None, :]
    tokens = np.where((starts >= 0) & (tokens <= budget), tokens, _UNREACHED)
    starts = np.maximum(starts, 0)
    # cost[k, i]: the fewest padded tokens covering the i shortest in exactly k passes; rows_of[k, i]:
    # the rows of the last of those passes.
    cost = np.full((most_passes + 1, count + 1), _UNREACHED, dtype=np.int64)
    cost[0, 0] = 0
    rows_of = np.zeros((most_passes + 1, count + 1), dtype=np.int64)
    for passes in range(1, most_passes + 1):
        candidates = np.minimum(cost[passes - 1][starts] + tokens, _UNREACHED)
        best = np.argmin(candidates, axis=0)  # the first of equal costs: the fewest rows
        cost[passes, 1:] = candidates[best, np.arange(count)]
        rows_of[passes, 1:] = allowed[best]
    passes = int(np.argmin(cost[1:, count])) + 1  # argmin: the first of equal costs, the fewest passes
    groups: list[list[int]] = []
    end = count
    while passes:
        rows = int(rows_of[passes, end])
        groups.append(order[end - rows : end])
        end -= rows
        passes -= 1
    groups.reverse()
    return groups
