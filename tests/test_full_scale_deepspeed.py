"""DeepSpeed ZeRO-2 and ZeRO-3 on CPU processes (gloo): two processes that train a full fine-tune through
DeepSpeedEngine end with the weights and Adam states one process gets from the same batch on TorchEngine, and
a checkpoint taken mid-way (full weights, full Adam states) resumes to the same weights (full_scale/zero.py)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import launch_worker

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
# As for FSDP (tests/test_full_scale_fsdp.py): two half-batch gradients averaged against one whole-batch
# gradient, fp32 rounding in another order, amplified a little by Adam's normalisation over 3 steps.
TOLERANCE = 1e-5


def run_worker(out: Path, distributed: str) -> None:
    """Three engine steps of the tiny model's full fine-tune and a PPO critic on a fixed batch of 4 completions
    (this process's share of it); then, from a checkpoint taken after two, a fresh policy, critic and engine
    take the third again. Rank 0 writes the weights and Adam states of both."""
    import torch

    from full_scale import FullScaleTask

    task = FullScaleTask(
        model="tiny", device="cpu", max_new_tokens=6, eval_prompts=2, eval_samples_per_prompt=1, distributed=distributed
    )
    policy, critic = task.make_policy(), task.make_value_model()  # PPO's critic: a second module in the engine
    engine = task.make_engine(trainable(policy, critic), 1e-2, 0.5)
    prompts = task.train_prompts[:4]
    completions = policy.sample(prompts, 1, torch.Generator().manual_seed(0))  # the same batch on every process
    share = torch.arange(task.rank, 4, task.world)
    mine = [prompts[i] for i in share.tolist()]

    def loss(policy, critic):
        values = critic(mine, completions[share])
        # the critic's head starts at zero: a target of 1 moves it at once, and its trunk from the second step
        return -policy.logprobs(mine, completions[share]).sum().mean() + (values - 1).pow(2).sum(-1).mean()

    for step in range(STEPS):
        if step == STEPS - 1:  # collectives: every process calls them; saved, as a run saves them
            checkpoint = io.BytesIO()
            state = {"policy": policy.state_dict(), "optimizer": engine.state_dict(), "critic": critic.state_dict()}
            torch.save(state, checkpoint)
            if task.rank == 0:
                (out / f"{distributed}.pt").write_bytes(checkpoint.getvalue())
        engine.step(loss(policy, critic))
    record = {"world": task.world, "sharded": bool(policy.sharded), "straight": summary(policy, critic, engine)}

    policy, critic = task.make_policy(), task.make_value_model()
    engine = task.make_engine(trainable(policy, critic), 1e-2, 0.5)
    checkpoint.seek(0)
    checkpoint = torch.load(checkpoint)
    policy.load_state_dict(checkpoint["policy"])  # in the core's order (alignlab/core/train.py, Loop)
    engine.load_state_dict(checkpoint["optimizer"])
    critic.load_state_dict(checkpoint["critic"])
    engine.step(loss(policy, critic))
    record["resumed"] = summary(policy, critic, engine)
    if task.rank == 0:
        record["checkpoint"] = str(out / f"{distributed}.pt")
        (out / f"{distributed}.json").write_text(json.dumps(record))


def trainable(*modules) -> list:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def summary(policy, critic, engine) -> dict:
    weights = {**policy.state_dict(), **{f"critic.{k}": v for k, v in critic.state_dict().items()}}
    optimizer = engine.state_dict()
    return {
        "weights": {k: v.flatten().tolist() for k, v in weights.items()},
        "steps": sorted({float(s["step"]) for s in optimizer["state"].values()}),
        "exp_avg": [s["exp_avg"].flatten().tolist() for s in optimizer["state"].values()],
        "exp_avg_sq": [s["exp_avg_sq"].flatten().tolist() for s in optimizer["state"].values()],
    }


def launch(out: Path, processes: int, distributed: str, config: str | None = None) -> dict:
    return launch_worker(__file__, out, processes, distributed, config)


def largest_difference(a: dict, b: dict) -> float:
    import torch

    difference = 0.0
    for key in ("exp_avg", "exp_avg_sq"):
        for x, y in zip(a[key], b[key], strict=True):
            difference = max(difference, (torch.tensor(x) - torch.tensor(y)).abs().max().item())
    assert a["weights"].keys() == b["weights"].keys()  # the full model, whatever the sharding
    for key, values in a["weights"].items():
        difference = max(difference, (torch.tensor(values) - torch.tensor(b["weights"][key])).abs().max().item())
    return difference


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    pytest.importorskip("transformers")
    return launch(tmp_path_factory.mktemp("single"), 1, "off")


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, distributed, config",
    [(2, "deepspeed_zero2", None), (3, "auto", "deepspeed_zero3.yaml")],
    ids=["zero2-torchrun", "zero3-accelerate-launch"],
)
def test_two_process_zero_ends_with_the_one_process_weights_and_resumes(tmp_path, single, stage, distributed, config):
    pytest.importorskip("deepspeed", reason="DeepSpeed is an extra: pip install 'alignlab[deepspeed]'")
    zero = launch(tmp_path, 2, distributed, config)
    assert zero["world"] == 2 and zero["sharded"] == (stage == 3) and not single["sharded"]
    assert zero["straight"]["steps"] == single["straight"]["steps"] == [STEPS]
    assert any(v != 0 for v in single["straight"]["weights"]["critic.head.weight"])  # the critic trained
    difference = largest_difference(zero["straight"], single["straight"])
    print(f"ZeRO-{stage}: largest difference {difference:.3g}")
    assert difference < TOLERANCE, difference
    assert largest_difference(zero["resumed"], zero["straight"]) < TOLERANCE
    assert zero["resumed"]["steps"] == [STEPS]
    # the checkpoint's Adam state is torch.optim.Adam's, whole: the one-process engine resumes it as its own
    import torch

    from alignlab.core.engine import TorchEngine

    theirs, ours = (torch.load(run["checkpoint"])["optimizer"] for run in (zero, single))
    engine = TorchEngine([torch.nn.Parameter(s["exp_avg"]) for s in ours["state"].values()], 1e-2, 0.5)
    engine.load_state_dict(theirs)
    loaded = engine.state_dict()
    assert loaded["param_groups"] == ours["param_groups"]
    for i, state in ours["state"].items():
        assert loaded["state"][i]["step"] == state["step"] == STEPS - 1
        for key in ("exp_avg", "exp_avg_sq"):
            assert (loaded["state"][i][key] - state[key]).abs().max() < TOLERANCE


@pytest.mark.slow
def test_a_two_process_command_line_run_on_zero2_trains_into_one_run_directory(tmp_path):
    """`torchrun --nproc_per_node=2 -m alignlab ... task.distributed=deepspeed_zero2`: rank 0 alone holds the
    run directory's lock and writes it (every rank took the lock before, so rank 1 stopped at once)."""
    pytest.importorskip("transformers")
    pytest.importorskip("deepspeed", reason="DeepSpeed is an extra: pip install 'alignlab[deepspeed]'")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "alignlab"]
    command += ["task=full_scale", "task.model=tiny", "task.device=cpu", "task.distributed=deepspeed_zero2"]
    command += ["algo=dpo", "train.iterations=2", "train.checkpoint_every=1", "train.progress=false", "plot=false"]
    command += [f"hydra.run.dir={run}"]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["iterations"] == 2
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [row["iteration"] for row in rows] == ["0", "1", "2"]
    assert float(rows[-1]["train/updates"]) == 2.0  # both rounds trained
    assert (run / "checkpoint.pt").is_file()


@pytest.mark.parametrize(
    "variable, value, key",
    [
        ("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "cpu", "offload_optimizer_device: cpu"),
        ("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "nvme", "offload_param_device: nvme"),
        ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4", "gradient_accumulation_steps: 4"),
        ("ACCELERATE_GRADIENT_CLIPPING", "1.0", "gradient_clipping: 1.0"),
        ("ACCELERATE_MIXED_PRECISION", "bf16", "mixed_precision: bf16"),
        ("ACCELERATE_DEEPSPEED_ZERO3_INIT", "true", "zero3_init_flag: true"),
        ("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0", "ZeRO stage 0"),
    ],
)
def test_a_deepspeed_accelerate_setting_tier_3_does_not_run_is_refused(monkeypatch, variable, value, key):
    """accelerate launch hands its config's deepspeed_config over as environment variables; one that tier 3
    would ignore stops the run before any process group starts (with or without the package)."""
    pytest.importorskip("transformers")
    from alignlab.errors import ConfigError
    from full_scale import FullScaleTask

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=key):
        FullScaleTask(model="tiny", device="cpu")


def test_deepspeed_without_the_package_is_refused(monkeypatch):
    """The test venv has deepspeed (make setup-lm installs the extra), so its absence is simulated where
    tier 3 looks for it."""
    pytest.importorskip("transformers")
    import importlib.util

    from alignlab.errors import ConfigError
    from full_scale import FullScaleTask

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a)
    )
    for distributed in ("deepspeed", "deepspeed_zero3"):
        with pytest.raises(ConfigError, match="needs the deepspeed package") as refusal:
            FullScaleTask(model="tiny", device="cpu", distributed=distributed)
        assert "pip install 'alignlab[deepspeed]'" in str(refusal.value)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), sys.argv[2])
