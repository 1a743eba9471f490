"""FSDP2 runs of the real entry point (cli.run_experiment) on CPU processes (gloo).

- PPO with its value model, sampling semi-online from the frozen sampler copy (sync every 2 updates), the
  policy judging its own samples (task.judge=self): two processes end with the weights one process gets.
- The self-judge's verdicts on a different share of responses per process, which stop at different steps.
- A two-process run killed mid-way resumes to the uninterrupted run's metrics and weights.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import launch_worker, run_results

# PPO semi-online with the self-judge: the sampler copy is refreshed once, the critic trains beside the policy.
RUN = [
    "task=full_scale",
    "task.model=tiny",
    "task.device=cpu",
    "task.max_new_tokens=3",
    "task.eval_prompts=2",
    "task.eval_samples_per_prompt=1",
    "task.reward=judge",
    "task.judge=self",
    "task.judge_scoring=probabilities",
    "algo=ppo",
    "sampling=semi_online",
    "sampling.sync_every=2",
    "sampling.prompts_per_round=2",
    "sampling.samples_per_prompt=2",
    "train.iterations=3",
    "train.lr=0.01",
    "train.eval_every=2",
    "train.checkpoint_every=1",
    "train.progress=false",
    "plot=false",
]
# As tests/test_full_scale_fsdp.py: fp32 rounding in another order (the gradient reduce-scattered), amplified a
# little by Adam's normalisation.
TOLERANCE = 1e-5
# ZeRO-3 clips by a norm summed over its flat partitions and steps Adam on flat fp32 buffers: last-bit
# differences, which Adam's normalisation of near-zero gradients and PPO's whitened advantages amplify over the
# run (3.6e-5 measured, against 4.9e-6 for 3 plain steps in tests/test_full_scale_deepspeed.py).
ZERO3_TOLERANCE = 1e-4


class Killed(BaseException):
    """What a kill does to the run: it stops, wherever it is (tests/test_resume.py's)."""


def config(overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def whole_rounds(task, count: int, generator):
    """Every process draws the whole round, as one process does: their averaged gradient is then the one
    process's, and the runs are comparable (how the prompts are shared out is tests/test_full_scale_fsdp.py's)."""
    import torch

    idx = torch.randint(len(task.train_prompts), (count,), generator=generator)
    return [task.train_prompts[i] for i in idx.tolist()]


def run_worker(out: Path, distributed: str) -> None:
    """The run on `distributed` (fsdp: two processes; off: one); on fsdp also the same run killed at its first
    evaluation (after the checkpoint of iteration 1) and run again. Rank 0 writes what the test reads."""
    import torch
    import torch.distributed as dist

    from alignlab.core import train
    from alignlab.runs import cli
    from full_scale import FullScaleTask

    out.mkdir(parents=True, exist_ok=True)
    FullScaleTask.sample_prompts = whole_rounds
    seen = {}
    make_engine = FullScaleTask.make_engine

    def make_engine_seen(task, params, lr, max_grad_norm):
        seen.update(world=task.world, engine=type(make_engine(task, params, lr, max_grad_norm)).__name__)
        critic = None if task._value is None else type(task._value).__name__  # kept by the task if sharded
        seen.update(critic=critic, sharded=task._policy.sharded is not None)
        return make_engine(task, params, lr, max_grad_norm)

    FullScaleTask.make_engine = make_engine_seen
    overrides = [*RUN, f"task.distributed={distributed}"]
    cli.run_experiment(config(overrides), out / "whole")
    record = dict(seen)
    if distributed == "fsdp":
        check_evaluation = train.check_evaluation

        def killed(*args):
            raise Killed

        train.check_evaluation = killed
        try:
            cli.run_experiment(config(overrides), out / "killed")
        except Killed:
            pass
        train.check_evaluation = check_evaluation
        record["stopped_at"] = torch.load(out / "killed" / "checkpoint.pt", weights_only=True)["iteration"]
        dist.barrier()  # rank 0 wrote its checkpoint before any process resumes from it, as after a relaunch
        cli.run_experiment(config(overrides), out / "killed")
    record["verdicts"] = judge_verdicts(distributed)
    if int(os.environ.get("RANK", "0")) == 0:
        (out / f"{distributed}.json").write_text(json.dumps(record))


def judge_verdicts(distributed: str) -> list[str]:
    """The self-judge's greedy verdicts (LLMJudge.generate, from the policy's model) on two requests, one per
    process on two. The tiny model's greedy token repeats the last one (tied embeddings over a small residual
    stream), so the request that ends with the end token stops at once and the other runs to the token cap:
    the processes stop at different steps. The verdicts are gathered in request order."""
    import torch.distributed as dist

    from full_scale import FullScaleTask

    task = FullScaleTask(
        model="tiny", device="cpu", reward="judge", judge="self", judge_max_new_tokens=4, distributed=distributed
    )
    policy = task.make_policy()
    task.make_engine([p for p in policy.parameters() if p.requires_grad], 1e-2, None)  # ZeRO-3 partitions here
    judge = task.reward_fn
    records = [task.record(p) for p in task.train_prompts[:2]]
    requests = judge.requests(records, ["4", "the answer"])
    requests[0] += task.tokenizer.eos_token
    mine = judge.generate(requests[task.rank :: task.world])
    if task.world == 1:
        return mine
    gathered = [None] * task.world
    dist.all_gather_object(gathered, mine)
    return [verdict for share in zip(*gathered, strict=True) for verdict in share]


def tensors(state, prefix: str = "") -> dict:
    """Every tensor of a checkpoint, by its path."""
    import torch

    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return {}
    found = {}
    for key, value in items:
        found.update(tensors(value, f"{prefix}/{key}"))
    return found


def compare(run: Path, single_run: Path, tolerance: float = TOLERANCE) -> tuple[list[dict], dict, list[dict]]:
    """Assert that `run` ended as the one-process `single_run` did: metrics, summary, and the policy's,
    critic's and frozen sampler's weights within `tolerance`. Returns the run's results and both checkpoints."""
    import torch

    (rows, summary), (rows_single, summary_single) = run_results(run), run_results(single_run)
    assert float(rows[-1]["sampler/syncs"]) == 1.0 and float(rows[-1]["loss/value"]) > 0
    differences = [rows_difference(rows, rows_single)]
    assert {k: v for k, v in summary.items() if isinstance(v, str)} == {
        k: v for k, v in summary_single.items() if isinstance(v, str)
    }
    numbers = [{k: v for k, v in s.items() if not isinstance(v, str)} for s in (summary, summary_single)]
    differences.append(rows_difference(*([n] for n in numbers)))
    checkpoints = [torch.load(r / "checkpoint.pt", weights_only=True) for r in (run, single_run)]
    assert checkpoints[1]["extra_modules"][0]["head.weight"].abs().max() > 0  # the critic trained (from zero)
    for part in (lambda c: c["policy"], lambda c: c["extra_modules"][0], lambda c: c["sampler"]["frozen"]):
        differences.append(largest_difference(*(part(c) for c in checkpoints)))
    print(f"{run.parent.name}: largest difference {max(differences):.3g}")
    assert max(differences) < tolerance, differences
    return rows, summary, checkpoints


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()  # the whole model, however it was sharded
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def rows_difference(a: list[dict], b: list[dict]) -> float:
    assert [r.keys() for r in a] == [r.keys() for r in b]
    assert [[k for k, v in r.items() if v == ""] for r in a] == [[k for k, v in r.items() if v == ""] for r in b]
    return max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b, strict=True) for k in x if x[k] != "")


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[dict, Path]:
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("single")
    return launch_worker(__file__, out, 1, "off"), out / "whole"


@pytest.mark.slow
def test_two_process_fsdp2_ppo_semi_online_self_judged_ends_with_the_one_process_run_and_resumes(tmp_path, single):
    """PPO's critic is sharded as the policy is (its checkpoint holds it whole), the semi-online sampler is a
    sharded copy refreshed from the policy's weights, and the judge is the sharded policy. Every process draws
    the whole round (whole_rounds), so the runs compare: in this test they are equal to the last bit, the
    averaged gradient of identical halves being exact."""
    pytest.importorskip("transformers")
    import torch

    sharded = launch_worker(__file__, tmp_path / "fsdp", 2, "fsdp")
    single, single_run = single
    # the self-judge generating from the sharded policy, each process on its own request: the verdicts of one
    # process, one that ended at once and one at the token cap (transformers' synced_gpus kept them in step)
    assert sharded.pop("verdicts") == single["verdicts"] == ["", "\n\n\n\n"]
    assert sharded == {
        "world": 2,
        "engine": "FSDPEngine",
        "critic": "WholeStateDict",
        "sharded": True,
        "stopped_at": 1,
    }
    assert single == {
        "world": 1,
        "engine": "TorchEngine",
        "critic": None,
        "sharded": False,
        "verdicts": ["", "\n\n\n\n"],
    }
    rows, summary, checkpoints = compare(tmp_path / "fsdp" / "whole", single_run)
    # killed at its first evaluation, resumed from iteration 1: the uninterrupted run's numbers exactly
    assert run_results(tmp_path / "fsdp" / "killed") == (rows, summary)
    resumed = torch.load(tmp_path / "fsdp" / "killed" / "checkpoint.pt", weights_only=True)
    for key in ("policy", "extra_modules", "sampler", "optimizer"):
        assert largest_difference(tensors(resumed[key]), tensors(checkpoints[0][key])) == 0.0, key


@pytest.mark.slow
def test_two_process_zero3_ppo_semi_online_self_judged_ends_with_the_one_process_run(tmp_path, single):
    """The same run under DeepSpeed ZeRO-3: the critic's partitions gathered whole into the checkpoint, the
    semi-online sampler a whole copy (ShardedPolicy), the self-judge generating in step from partitions."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is an extra: pip install 'alignlab[deepspeed]'")
    zero = launch_worker(__file__, tmp_path / "zero3", 2, "deepspeed_zero3")
    expected = {"world": 2, "engine": "DeepSpeedEngine", "critic": "WholeStateDict", "sharded": True}
    assert zero == {**expected, "verdicts": single[0]["verdicts"]}
    compare(tmp_path / "zero3" / "whole", single[1], ZERO3_TOLERANCE)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), sys.argv[2])
