"""Target builders of alignlab.core.targets on a small reward table worked out by hand.

The rewards are dyadic fractions, so every gap and mean below is exact in float32 and comparisons with
`min_gap` at equality are not at the mercy of rounding.
"""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.core.targets import (
    above_threshold,
    all_ordered_pairs,
    best_vs_worst_pairs,
    desirable_labels,
    group_mean_baseline,
    group_normalized_advantages,
    leave_one_out_advantages,
    top_fraction,
    top_k_per_group,
    worse_than_best,
)

# Three prompts x four samples; flat index = row * 4 + column.
#   prompt 0: indices 0..3, all distinct, best 1 (1.0), worst 0 (0.0), gap 1.0, mean 0.4375
#   prompt 1: indices 4..7, all tie (no signal)
#   prompt 2: indices 8..11, all distinct, best 8 (2.0), worst 9 (0.0), gap 2.0, mean 1.0625
TABLE = [
    [0.0, 1.0, 0.5, 0.25],
    [0.5, 0.5, 0.5, 0.5],
    [2.0, 0.0, 0.75, 1.5],
]


def table() -> torch.Tensor:
    return torch.tensor(TABLE)


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-6, atol=1e-6)


def pair_set(chosen: torch.Tensor, rejected: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(chosen.tolist(), rejected.tolist(), strict=True))


def test_best_vs_worst_pairs_skips_all_tie_prompts():
    chosen, rejected, skipped = best_vs_worst_pairs(table())
    assert chosen.tolist() == [1, 8]
    assert rejected.tolist() == [0, 9]
    assert skipped == 1


def test_best_vs_worst_pairs_min_gap_is_strict():
    # Prompt 0's gap is exactly 1.0: "differ by min_gap or less" gives no pair.
    chosen, rejected, skipped = best_vs_worst_pairs(table(), min_gap=1.0)
    assert (chosen.tolist(), rejected.tolist(), skipped) == ([8], [9], 2)
    chosen, rejected, skipped = best_vs_worst_pairs(table(), min_gap=0.5)
    assert (chosen.tolist(), rejected.tolist(), skipped) == ([1, 8], [0, 9], 1)
    chosen, rejected, skipped = best_vs_worst_pairs(table(), min_gap=2.0)
    assert (chosen.numel(), rejected.numel(), skipped) == (0, 0, 3)


def test_all_ordered_pairs_lists_every_strictly_better_sample():
    chosen, rejected, skipped = all_ordered_pairs(table())
    assert pair_set(chosen, rejected) == {
        (1, 0),
        (1, 2),
        (1, 3),
        (2, 0),
        (2, 3),
        (3, 0),  # prompt 0: 1.0 > 0.5 > 0.25 > 0.0
        (8, 9),
        (8, 10),
        (8, 11),
        (10, 9),
        (11, 9),
        (11, 10),  # prompt 2: 2.0 > 1.5 > 0.75 > 0.0
    }
    assert chosen.numel() == 12
    # 3 prompts x C(4, 2) = 18 candidate pairs; the 6 of the all-tie prompt are skipped.
    assert skipped == 18 - 12


def test_all_ordered_pairs_with_min_gap():
    chosen, rejected, skipped = all_ordered_pairs(table(), min_gap=0.5)
    # Gaps of exactly 0.5 (1.0 vs 0.5, 0.5 vs 0.0, 2.0 vs 1.5) are skipped.
    assert pair_set(chosen, rejected) == {(1, 0), (1, 3), (8, 9), (8, 10), (10, 9), (11, 9), (11, 10)}
    assert skipped == 18 - 7


def test_all_ordered_pairs_skips_a_tied_pair_inside_a_prompt():
    chosen, rejected, skipped = all_ordered_pairs(torch.tensor([[1.0, 1.0, 0.0]]))
    assert pair_set(chosen, rejected) == {(0, 2), (1, 2)}
    assert skipped == 1


def test_top_k_per_group():
    rewards = torch.tensor([TABLE[0], TABLE[2]])
    top = top_k_per_group(rewards, 2)
    assert top.numel() == 4
    assert sorted(top[:2].tolist()) == [1, 2]  # 1.0 and 0.5
    assert sorted(top[2:].tolist()) == [4, 7]  # 2.0 and 1.5
    assert top_k_per_group(rewards, 1).tolist() == [1, 4]
    # k above n keeps the whole group.
    assert sorted(top_k_per_group(rewards, 10).tolist()) == list(range(8))


def test_worse_than_best_marks_everything_but_the_best():
    mask = worse_than_best(torch.tensor([TABLE[0], TABLE[2]]))
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[True, False, True, True], [False, True, True, True]]


def test_top_fraction_ranks_across_prompts():
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.25, 2.0, 0.0, 0.75, 1.5])
    assert sorted(top_fraction(rewards, 0.25).tolist()) == [4, 7]  # 2 of 8
    assert sorted(top_fraction(rewards, 0.5).tolist()) == [1, 4, 6, 7]  # 4 of 8
    # At least one sample is kept, and a fraction of 1 keeps all.
    assert top_fraction(rewards, 0.01).tolist() == [4]
    assert sorted(top_fraction(rewards, 1.0).tolist()) == list(range(8))


def test_above_threshold_is_inclusive():
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.25, 2.0, 0.0, 0.75, 1.5])
    assert above_threshold(rewards, 0.75).tolist() == [1, 4, 6, 7]
    assert above_threshold(rewards, 0.0).tolist() == list(range(8))
    assert above_threshold(rewards, 3.0).numel() == 0


def test_group_mean_baseline():
    close(
        group_mean_baseline(table()),
        [
            0.0 - 0.4375,
            1.0 - 0.4375,
            0.5 - 0.4375,
            0.25 - 0.4375,
            0.0,
            0.0,
            0.0,
            0.0,
            2.0 - 1.0625,
            0.0 - 1.0625,
            0.75 - 1.0625,
            1.5 - 1.0625,
        ],
    )


def test_leave_one_out_advantages():
    # A_i = r_i - (sum of the other three) / 3. Prompt 0 sums to 1.75, prompt 2 to 4.25.
    close(
        leave_one_out_advantages(table()),
        [
            0.0 - 1.75 / 3,
            1.0 - 0.75 / 3,
            0.5 - 1.25 / 3,
            0.25 - 1.5 / 3,
            0.0,
            0.0,
            0.0,
            0.0,
            2.0 - 2.25 / 3,
            0.0 - 4.25 / 3,
            0.75 - 3.5 / 3,
            1.5 - 2.75 / 3,
        ],
    )


def test_leave_one_out_is_the_group_mean_baseline_scaled_by_n_over_n_minus_one():
    close(leave_one_out_advantages(table()), (group_mean_baseline(table()) * 4 / 3).tolist())


def test_group_normalized_advantages_use_the_population_std():
    deviations = [-0.4375, 0.5625, 0.0625, -0.1875]
    std = math.sqrt(sum(d * d for d in deviations) / 4)  # population std, divisor n = 4
    advantages = group_normalized_advantages(torch.tensor([TABLE[0]]), eps=0.0)
    close(advantages, [d / std for d in deviations])
    # Within a group, the normalised advantages have mean 0 and population std 1.
    assert advantages.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert advantages.pow(2).mean().item() == pytest.approx(1.0, rel=1e-6)


def test_group_normalized_advantages_of_a_tie_are_zero_not_nan():
    advantages = group_normalized_advantages(table())
    close(advantages[4:8], [0.0, 0.0, 0.0, 0.0])
    deviations = [2.0 - 1.0625, 0.0 - 1.0625, 0.75 - 1.0625, 1.5 - 1.0625]
    std = math.sqrt(sum(d * d for d in deviations) / 4)
    close(advantages[8:], [d / (std + 1e-6) for d in deviations])


def test_desirable_labels_beat_the_prompt_mean_and_drop_ties():
    labels, keep = desirable_labels(table())
    # Prompt 0 mean 0.4375: 1.0 and 0.5 beat it. Prompt 2 mean 1.0625: 2.0 and 1.5 beat it.
    assert labels[:4].tolist() == [False, True, True, False]
    assert labels[8:].tolist() == [True, False, False, True]
    assert keep.tolist() == [True] * 4 + [False] * 4 + [True] * 4
    # A sample exactly at the mean is not desirable.
    labels, keep = desirable_labels(torch.tensor([[0.0, 0.5, 1.0]]))
    assert labels.tolist() == [False, False, True]
    assert keep.tolist() == [True, True, True]
