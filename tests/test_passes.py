"""How a batch's windows are cut into forward passes (``model.passes``): the fewest padded tokens,
no more passes than equal cuts, no pass larger than the limits."""

from __future__ import annotations

import random

import pytest

from model.passes import ROW_STEP, plan_passes


def padded_tokens(lengths: list[int], passes: list[list[int]], width_step: int = 1) -> int:
    return sum(len(rows) * round_up(max(lengths[index] for index in rows), width_step) for rows in passes)


def round_up(length: int, step: int) -> int:
    return (length + step - 1) // step * step


def equal_cuts(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def fewest_padded_tokens(
    lengths: list[int], batch_size: int, step: int, width_step: int = 1
) -> tuple[int, int]:
    """The reference: every contiguous cut of the sorted lengths, one row count at a time."""
    ordered = [round_up(length, width_step) for length in sorted(lengths)]
    count = len(ordered)
    step = min(step, batch_size)
    most_passes = -(-count // batch_size)
    unreached = float("inf")
    cost = [[unreached] * (count + 1) for _ in range(most_passes + 1)]
    cost[0][0] = 0
    for passes in range(1, most_passes + 1):
        for end in range(1, count + 1):
            for rows in range(1, min(2 * batch_size, end) + 1):
                if rows % step and rows not in (count % step, batch_size, count % batch_size):
                    continue
                tokens = rows * ordered[end - 1]
                if tokens <= batch_size * ordered[-1]:
                    cost[passes][end] = min(cost[passes][end], cost[passes - 1][end - rows] + tokens)
    best = min(cost[passes][count] for passes in range(1, most_passes + 1))
    fewest = min(passes for passes in range(1, most_passes + 1) if cost[passes][count] == best)
    return int(best), fewest


def test_short_rows_share_a_pass_instead_of_padding_to_a_long_one() -> None:
    lengths = [10] * 31 + [50]
    equal = equal_cuts(lengths, 16)
    assert padded_tokens(lengths, equal) == 16 * 10 + 16 * 50

    passes = plan_passes(lengths, 16, row_step=1)

    assert [len(rows) for rows in passes] == [31, 1]
    assert padded_tokens(lengths, passes) == 31 * 10 + 50
    assert passes[1] == [31]


def test_passes_hold_a_multiple_of_the_row_step_but_for_the_remainder() -> None:
    lengths = [10] * 31 + [50] + [20] * 3
    assert ROW_STEP == 8

    passes = plan_passes(lengths, 16)

    assert [len(rows) for rows in passes] == [24, 8, 3]  # 35 rows: 8-row multiples and the 3 left
    assert padded_tokens(lengths, passes) == 24 * 10 + 8 * 20 + 3 * 50


@pytest.mark.parametrize("width_step", [1, 8])
@pytest.mark.parametrize("step", [1, ROW_STEP])
@pytest.mark.parametrize("seed", range(30))
def test_the_cut_is_the_fewest_padded_tokens_within_the_limits(seed: int, step: int, width_step: int) -> None:
    rng = random.Random(seed)
    batch_size = rng.choice([1, 2, 3, 8, 32])
    max_length = rng.choice([16, 64, 512])
    lengths = [rng.randint(1, max_length) for _ in range(rng.randint(0, 120))]

    passes = plan_passes(lengths, batch_size, row_step=step, width_step=width_step)

    assert sorted(index for rows in passes for index in rows) == list(range(len(lengths)))
    assert [lengths[index] for rows in passes for index in rows] == sorted(lengths), "ascending lengths"
    assert len(passes) <= len(equal_cuts(lengths, batch_size))
    assert all(len(rows) <= 2 * batch_size for rows in passes)
    widest = round_up(max(lengths, default=0), width_step)
    assert all(
        len(rows) * round_up(max(lengths[i] for i in rows), width_step) <= batch_size * widest
        for rows in passes
    )
    equal = padded_tokens(lengths, equal_cuts(lengths, batch_size), width_step)
    assert padded_tokens(lengths, passes, width_step) <= equal
    if len(lengths) > batch_size:
        reference = fewest_padded_tokens(lengths, batch_size, step, width_step)
        assert (padded_tokens(lengths, passes, width_step), len(passes)) == reference
        step_rows = min(step, batch_size)
        also = (len(lengths) % step_rows, batch_size, len(lengths) % batch_size)
        assert all(len(rows) % step_rows == 0 or len(rows) in also for rows in passes)


def test_no_pass_is_larger_than_equal_cuts_largest() -> None:
    """Full 512-token windows among short ones: no pass holds more tokens than batch_size of the longest."""
    lengths = [512] * 40 + [20] * 40
    passes = plan_passes(lengths, 32, row_step=1)
    assert max(len(rows) * max(lengths[i] for i in rows) for rows in passes) <= 32 * 512
    assert all(len(rows) <= 32 for rows in passes if lengths[rows[-1]] == 512)
    assert [len(rows) for rows in passes if lengths[rows[-1]] == 20] == [40], "the short ones in one pass"


def test_the_cut_counts_the_width_the_engine_pads_to() -> None:
    """Rows of 1 and 8 tokens cost the same once padded to steps of 8: they share a pass."""
    lengths = [1] * 4 + [8] * 3 + [9]
    assert [len(rows) for rows in plan_passes(lengths, 4, row_step=1)] == [4, 4]  # 4 × 1 + 4 × 9 tokens
    assert [len(rows) for rows in plan_passes(lengths, 4, row_step=1, width_step=8)] == [7, 1]  # 7 × 8 + 16


def test_a_batch_of_one_pass_or_none() -> None:
    assert plan_passes([], 32) == []
    assert plan_passes([7, 3, 5], 32) == [[1, 2, 0]]
