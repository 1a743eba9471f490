"""Tier 3 on two processes: `accelerate launch --num_processes 2 --cpu` runs a few DDP steps of the tiny
model; both processes must end with the same weights, having trained on different prompts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_worker(out: Path) -> None:
    """One process of the DDP run (started by accelerate): train, then write a digest of the weights."""
    import torch

    from alignlab.core.objectives import DPO
    from alignlab.core.sampling import SamplingConfig
    from alignlab.core.train import TrainConfig, train
    from full_scale import FullScaleTask

    task = FullScaleTask(model="tiny", device="cpu", max_new_tokens=6, eval_prompts=2, eval_samples_per_prompt=1)
    assert task.world == 2, "expected two processes"
    # A reward with signal on a random model's text: the share of vowels.
    task.reward_fn.score = lambda prompts, texts, lengths: torch.tensor(
        [sum(c in "aeiou" for c in t) / max(len(t), 1) for t in texts]
    )
    seen = []
    draw = task.sample_prompts

    def spy(count, generator):
        prompts = draw(count, generator)
        seen.extend(p.tolist() for p in prompts)
        return prompts

    task.sample_prompts = spy
    initial = {k: v.clone() for k, v in task.base.state_dict().items()}
    _, _, policy = train(
        task,
        DPO(),
        SamplingConfig(prompts_per_round=2, samples_per_prompt=2),
        TrainConfig(iterations=3, lr=1e-2, progress=False),
    )
    weights = torch.cat([p.detach().flatten() for p in policy.parameters()])
    moved = max((v - initial[k.removeprefix("model.")]).abs().max().item() for k, v in policy.state_dict().items())
    record = {"rank": task.rank, "weights": weights.tolist(), "moved": moved, "prompts": seen}
    (out / f"rank{task.rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_weights(tmp_path):
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        __file__,
        str(tmp_path),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"2-process DDP run: {time.perf_counter() - started:.1f} s")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["moved"] > 1e-4, "the policy did not train"
    assert ranks[0]["prompts"] != ranks[1]["prompts"], "both processes trained on the same prompts"
    assert ranks[0]["weights"] == ranks[1]["weights"], "the processes ended with different weights"


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]))
