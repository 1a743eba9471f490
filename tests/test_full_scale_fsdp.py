"""FSDP2 on CPU processes (gloo): two processes that shard a full fine-tune end with the weights one process
gets from the same batch, and a sharded policy's checkpoint is the full one (full_scale/fsdp.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import launch_worker

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
# Two processes average two half-batch gradients where one process averages the whole batch: fp32 rounding
# in another order, amplified a little by Adam's normalisation over 3 steps.
TOLERANCE = 1e-5


def run_worker(out: Path, distributed: str) -> None:
    """Three engine steps of the tiny model's full fine-tune and a PPO critic (sharded too under FSDP) on a
    fixed batch of 4 completions (this process's share of it), then rank 0 writes the full weights of both
    and the size of the optimizer state."""
    import torch

    from full_scale import FullScaleTask

    task = FullScaleTask(
        model="tiny", device="cpu", max_new_tokens=6, eval_prompts=2, eval_samples_per_prompt=1, distributed=distributed
    )
    policy, critic = task.make_policy(), task.make_value_model()
    params = [p for m in (policy, critic) for p in m.parameters() if p.requires_grad]
    engine = task.make_engine(params, 1e-2, 0.5)
    prompts = task.train_prompts[:4]
    completions = policy.sample(prompts, 1, torch.Generator().manual_seed(0))  # the same batch on every process
    share = torch.arange(task.rank, 4, task.world)
    mine = [prompts[i] for i in share.tolist()]
    for _ in range(STEPS):
        values = critic(mine, completions[share])
        # the head starts at zero: a target of 1 moves it at once, and the trunk from the second step on
        engine.step(-policy.logprobs(mine, completions[share]).sum().mean() + (values - 1).pow(2).sum(-1).mean())
    state = {**policy.state_dict(), **{f"critic.{k}": v for k, v in critic.state_dict().items()}}  # collectives
    optimizer = engine.state_dict()
    if task.rank == 0:
        record = {
            "world": task.world,
            "sharded": bool(policy.sharded),
            "weights": {k: v.flatten().tolist() for k, v in state.items()},
            "optimizer_entries": len(optimizer["state"]),
            "parameters": len(params),
        }
        (out / f"{distributed}.json").write_text(json.dumps(record))


def launch(out: Path, processes: int, distributed: str, config: str | None = None) -> dict:
    return launch_worker(__file__, out, processes, distributed, config)


@pytest.mark.slow
def test_two_process_fsdp2_ends_with_the_one_process_weights(tmp_path):
    pytest.importorskip("transformers")
    import torch

    sharded = launch(tmp_path, 2, "fsdp")
    single = launch(tmp_path, 1, "off")
    assert sharded["world"] == 2 and sharded["sharded"] and not single["sharded"]
    assert sharded["weights"].keys() == single["weights"].keys()  # the checkpoint holds the full models
    assert any(v != 0 for v in single["weights"]["critic.head.weight"])
    assert sharded["optimizer_entries"] == sharded["parameters"]  # and the full optimizer state
    difference = 0.0
    for key, values in single["weights"].items():
        a, b = torch.tensor(sharded["weights"][key]), torch.tensor(values)
        difference = max(difference, (a - b).abs().max().item())
    print(f"largest difference: {difference:.3g}")
    assert difference < TOLERANCE, difference


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), sys.argv[2])


@pytest.mark.parametrize(
    "variable, key",
    [
        ("ACCELERATE_MIXED_PRECISION", "mixed_precision: bf16"),
        ("FSDP_OFFLOAD_PARAMS", "fsdp_offload_params: bf16"),
        ("FSDP_ACTIVATION_CHECKPOINTING", "fsdp_activation_checkpointing: bf16"),
    ],
)
def test_an_fsdp_setting_tier_3_does_not_run_is_refused(monkeypatch, variable, key):
    """accelerate launch hands its config's settings over as environment variables; one that tier 3 would
    ignore stops the run before any process group starts."""
    pytest.importorskip("transformers")
    from alignlab.errors import ConfigError
    from full_scale import FullScaleTask

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv(variable, "bf16")
    with pytest.raises(ConfigError, match=key):
        FullScaleTask(model="tiny", device="cpu")


def test_fsdp_with_lora_or_fsdp1_is_refused(monkeypatch):
    pytest.importorskip("transformers")
    from alignlab.errors import ConfigError
    from full_scale import FullScaleTask

    with pytest.raises(ConfigError, match="task.lora_r"):
        FullScaleTask(model="tiny", device="cpu", distributed="fsdp", lora_r=4)
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ConfigError, match="fsdp_version=1"):
        FullScaleTask(model="tiny", device="cpu", distributed="fsdp")
