"""A reward mixture means one thing: what trains is scored by the mixture, offline data included, and a schedule
is checked as a whole (alignlab/core/reward_mix.py). The one-line refusals are rows of tests/test_bad_input.py."""

import pytest
import torch

from alignlab.core.objectives import DPO
from alignlab.core.reward_mix import MixtureSpec, with_reward_mixture
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.errors import ConfigError
from bandits import BanditTask

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def components(task, arms):
    return task.reward_function("r1")([0] * len(arms), arms), task.reward_function("r2")([0] * len(arms), arms)


def test_offline_data_is_scored_by_the_mixture_not_by_the_tasks_reward():
    task = with_reward_mixture(BanditTask(reward="r1"), {"weights": {"r1": 1, "r2": 3}}, 10, reward="r1")
    data = task.offline_data(16, 4, torch.Generator().manual_seed(0))
    r1, r2 = components(task, data.completions)
    assert torch.allclose(data.rewards, 0.25 * r1 + 0.75 * r2)
    assert not torch.allclose(data.rewards, r1)


def test_a_schedule_rescores_the_offline_data_at_its_phase_boundary():
    schedule = {"schedule": [{"iterations": 3, "weights": {"r1": 1}}, {"iterations": 5, "weights": {"r2": 1}}]}
    task = with_reward_mixture(BanditTask(), schedule, 8)
    data = task.offline_data(8, 2, torch.Generator().manual_seed(0))
    r1, r2 = components(task, data.completions)
    task.begin_round(2)
    assert torch.equal(data.rewards, r1)
    task.begin_round(3)
    assert torch.equal(data.rewards, r2), "the offline data handed out before the boundary is re-scored"


def test_an_offline_run_on_a_mixture_trains_on_the_mixtures_scores():
    """The same offline run with the mixture {r2: 1} and with the task's reward r2 alone: the same numbers."""
    cfg = TrainConfig(iterations=6, lr=0.05, progress=False)
    offline = SamplingConfig(sync_every=None)
    mixed = with_reward_mixture(BanditTask(reward="r1"), {"weights": {"r1": 0, "r2": 1}}, 6)
    _, mixed_rows, _ = train(mixed, DPO(), offline, cfg, seed=0)
    _, plain_rows, _ = train(BanditTask(reward="r2"), DPO(), offline, cfg, seed=0)
    assert [r["loss/total"] for r in mixed_rows[1:]] == [r["loss/total"] for r in plain_rows[1:]]


@pytest.mark.parametrize(
    "schedule, iterations, phases",
    [
        ([{"iterations": 2, "weights": {"r1": 1}}, {"iterations": 3.0, "weights": {"r2": 1}}], 5, [0, 2]),
        ([{"fraction": 0.4, "weights": {"r1": 1}}, {"fraction": 0.6, "weights": {"r2": 1}}], 10, [0, 4]),
    ],
)
def test_a_schedule_of_one_kind_summing_to_the_run_is_taken_as_written(schedule, iterations, phases):
    spec = MixtureSpec.from_config({"schedule": schedule}, iterations)
    assert [start for start, _ in spec.phases] == phases


def test_a_task_reward_the_mixture_does_not_name_is_refused():
    with pytest.raises(ConfigError, match="task.reward=r2 is not one of reward_mix's rewards"):
        with_reward_mixture(BanditTask(), {"weights": {"r1": 1}}, 10, reward="r2")
    roles = {"hard": "r1", "easy": "r2"}
    with_reward_mixture(BanditTask(), {"weights": {"hard": 1}}, 10, roles, reward="r1")  # a role names it too
