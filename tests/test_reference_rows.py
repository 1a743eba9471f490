"""The frozen reference scores only the rows a round's targets use (issue 16).

Online DPO on tier 3's length reward drops most pairs (both completions hit the token cap: a tie), so the loop
builds the targets first and the reference scores the kept rows, each once, after them. On a bandit a row's
log-prob does not depend on its batch, so the runs with and without the saving are compared exactly.
"""

from __future__ import annotations

import pytest
import torch

from alignlab.core.objectives import DPO, GRPO, KTO, Objective
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from bandits import BanditTask, SoftmaxPolicy

K = 8


class CountingReference(SoftmaxPolicy):
    """The bandit's reference, recording how many rows each of its scoring calls held."""

    def __init__(self, logits, calls: list):
        super().__init__(logits, trainable=False)
        self.calls = calls

    def logprobs(self, prompts, completions):
        self.calls.append(len(completions))
        return super().logprobs(prompts, completions)


class HalvesTask(BanditTask):
    """Reward 1 on the upper half of the arms, 0 on the lower: two samples of a prompt often tie."""

    def __init__(self):
        super().__init__(num_arms=K)
        self.calls: list[int] = []

    def make_reference(self):
        return CountingReference(self.ref_logits, self.calls)

    def reward(self, prompts, completions):
        return (completions >= K // 2).float()


def run(objective: Objective, sampling: SamplingConfig, score_whole_round: bool, monkeypatch):
    """(metrics rows, final logits, rows the reference scored in each round)."""
    if score_whole_round:  # the order before issue 16: the reference scores every sample when it is drawn
        monkeypatch.setattr(type(objective), "needs_reference_before_targets", property(lambda self: True))
    task = HalvesTask()
    config = TrainConfig(iterations=6, lr=0.1, eval_every=1000, progress=False)
    _, rows, policy = train(task, objective, sampling, config, seed=0)
    monkeypatch.undo()
    return rows, policy.logits.detach().clone(), task.calls


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


@pytest.mark.parametrize(
    "objective, samples_per_prompt",
    [(DPO(), 2), (DPO(pairs="all"), 4), (KTO(), 4), (GRPO(), 4)],
    ids=["dpo-best-vs-worst", "dpo-all-pairs", "kto", "grpo"],
)
def test_the_reference_scores_only_the_rows_the_targets_keep(objective, samples_per_prompt, monkeypatch):
    sampling = SamplingConfig(prompts_per_round=16, samples_per_prompt=samples_per_prompt)
    round_rows = 16 * samples_per_prompt
    rows, logits, scored = run(objective, sampling, score_whole_round=False, monkeypatch=monkeypatch)
    whole_rows, whole_logits, whole_scored = run(objective, sampling, score_whole_round=True, monkeypatch=monkeypatch)
    # The same training, to the bit: the reference's numbers for the kept rows do not change.
    assert without_times(rows) == without_times(whole_rows)
    assert torch.equal(logits, whole_logits)
    assert whole_scored == [round_rows] * 6
    assert len(scored) == 6 - sum(row.get("train/skipped_round", 0) for row in rows)
    assert all(0 < count <= round_rows for count in scored)
    if objective.name == "dpo" and objective.pairs == "best_vs_worst":
        assert scored == [2 * row["pairs/count"] for row in rows[1:] if "pairs/count" in row]
        assert sum(scored) < sum(whole_scored) / 2  # ties are frequent with a 0/1 reward and 2 samples
    if objective.name == "dpo" and objective.pairs == "all":
        assert max(scored) <= round_rows  # a row in several pairs is scored once
    if objective.name == "grpo":  # every row is a target: nothing to save, nothing scored twice
        assert scored == whole_scored


def test_a_round_that_mixes_offline_rows_is_scored_whole(monkeypatch):
    sampling = SamplingConfig(prompts_per_round=16, samples_per_prompt=2, offline_fraction=0.5)
    rows, logits, scored = run(DPO(), sampling, score_whole_round=False, monkeypatch=monkeypatch)
    whole_rows, whole_logits, _ = run(DPO(), sampling, score_whole_round=True, monkeypatch=monkeypatch)
    assert without_times(rows) == without_times(whole_rows) and torch.equal(logits, whole_logits)
    assert scored[0] == 2 * sampling.offline_prompts  # the offline dataset, once at the start
    assert scored[1:] == [16] * 6  # the online half of each round, when it is drawn
