"""Tier 2: the causal-LM policy, the synthetic LLM task, its cache, its bad inputs, and does it learn."""

from __future__ import annotations

import copy
import importlib.resources
import math

import pytest
import torch

from alignlab.core.losses import dpo_loss
from alignlab.core.objectives import DPO
from alignlab.core.roles import resolve_reward
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.errors import ConfigError, DataError
from alignlab.lm.policy import left_pad, positions
from bandits import SoftmaxPolicy
from synthetic_llm import CausalLMPolicy, CausalLMValue, CharTokenizer, SyntheticLMTask, TokenCompletions
from synthetic_llm import reference as reference_module
from synthetic_llm.task import bradley_terry_scores, completion_lengths
from synthetic_llm.tokenizer import check_tokenizer_matches

# Every objective shipped in conf/algo/: a new one is covered without editing this file.
ALGOS = tuple(
    sorted(
        p.name[:-5]
        for p in importlib.resources.files("alignlab.conf").joinpath("algo").iterdir()
        if p.name.endswith(".yaml")
    )
)
REWARDS = ("min_length", "mean_length", "arithmetic")
REGIMES = ("online", "offline", "semi_online")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("alignlab_cache"))


@pytest.fixture(scope="session")
def length_task(cache_dir):
    return SyntheticLMTask(reward="min_length", cache_dir=cache_dir, eval_prompts=16)


def tiny_model(vocab_size: int = 8, n_positions: int = 16):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config)


# ---- TokenCompletions ------------------------------------------------------------------------------------
def test_token_completions_index_cat_lengths():
    a = TokenCompletions(torch.tensor([[5, 2], [2, 0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    b = TokenCompletions(torch.tensor([[4, 4, 2]]), torch.ones(1, 3))
    both = TokenCompletions.cat([a, b])
    assert both.tokens.shape == (3, 3) and len(both) == 3
    assert both.lengths.tolist() == [2.0, 1.0, 3.0]
    assert both[torch.tensor([2, 0])].tokens.tolist() == [[4, 4, 2], [5, 2, 0]]


# ---- the policy ------------------------------------------------------------------------------------------
def test_logprobs_do_not_depend_on_padding_or_micro_batching():
    model = tiny_model()
    policy = CausalLMPolicy(model, pad_token_id=0, eos_token_id=2, max_new_tokens=6)
    prompts = [torch.tensor([1, 5, 6, 7]), torch.tensor([1, 3])]
    completions = policy.sample(prompts, 3, torch.Generator().manual_seed(0))
    rows = [p for p in prompts for _ in range(3)]
    batched = policy.logprobs(rows, completions)
    for i, prompt in enumerate(rows):
        length = int(completions.mask[i].sum())
        seq = torch.cat([prompt, completions.tokens[i, :length]])
        logits = model(seq[None]).logits[0, len(prompt) - 1 : len(prompt) - 1 + length]
        alone = torch.log_softmax(logits, -1).gather(-1, seq[len(prompt) :, None]).squeeze(-1)
        torch.testing.assert_close(batched.tokens[i, :length], alone, atol=1e-5, rtol=1e-5)
        assert (batched.tokens[i, length:] == 0).all()
    micro = policy.logprobs(rows, completions, logprob_batch_size=2)
    torch.testing.assert_close(micro.tokens, batched.tokens, atol=1e-5, rtol=1e-5)
    batched.sum().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_kv_cached_sampling_matches_full_recomputation():
    model = tiny_model()
    policy = CausalLMPolicy(model, pad_token_id=0, eos_token_id=2, max_new_tokens=7, temperature=0.8, top_p=0.9)
    prompts = [torch.tensor([1, 5, 6, 7]), torch.tensor([1, 3])]
    cached = policy.sample(prompts, 4, torch.Generator().manual_seed(3))

    # The same loop without a cache: the whole sequence is recomputed at every step.
    generator = torch.Generator().manual_seed(3)
    rows = [p for p in prompts for _ in range(4)]
    ids, attention = left_pad(rows, 0)
    done = torch.zeros(len(rows), dtype=torch.bool)
    tokens = []
    with torch.no_grad():
        for _ in range(7):
            logits = model(input_ids=ids, attention_mask=attention, position_ids=positions(attention)).logits[:, -1]
            token = policy._draw(logits, generator).masked_fill(done, 0)
            tokens.append(token)
            done |= token == 2
            if done.all():
                break
            ids = torch.cat([ids, token[:, None]], 1)
            attention = torch.cat([attention, torch.ones_like(token[:, None])], 1)
    assert torch.equal(cached.tokens, torch.stack(tokens, 1))
    # The mask covers every token up to and including the end token.
    ended = (cached.tokens == 2).float().cumsum(1)
    expected = ((ended - (cached.tokens == 2).float()) == 0).float()
    assert torch.equal(cached.mask, expected)


def test_sampling_is_reproducible_from_the_generator():
    policy = CausalLMPolicy(tiny_model(), pad_token_id=0, eos_token_id=2, max_new_tokens=6)
    prompts = [torch.tensor([1, 4])]
    first = policy.sample(prompts, 8, torch.Generator().manual_seed(11))
    second = policy.sample(prompts, 8, torch.Generator().manual_seed(11))
    assert torch.equal(first.tokens, second.tokens) and len(first) == 8
    copy.deepcopy(policy)  # the semi-online sampler deep-copies the policy


def test_parity_one_token_lm_against_bandit():
    """max_new_tokens=1: an LM over K symbols is a K-armed bandit whose logits are its next-token logits."""
    k = 8
    model = tiny_model(vocab_size=k)
    policy = CausalLMPolicy(model, pad_token_id=0, eos_token_id=2, max_new_tokens=1)
    prompt = torch.tensor([1, 5, 3])
    with torch.no_grad():
        logits = model(prompt[None]).logits[0, -1]
    bandit = SoftmaxPolicy(logits)
    completions = policy.sample([prompt], 16, torch.Generator().manual_seed(0))
    assert completions.tokens.shape == (16, 1) and completions.mask.eq(1).all()
    arms = completions.tokens[:, 0]
    captured = []

    def keep_logits(module, inputs, output):
        output.retain_grad()
        captured.append(output)

    model.lm_head.register_forward_hook(keep_logits)

    lm = policy.logprobs([prompt] * 16, completions)
    bd = bandit.logprobs([0] * 16, arms)
    torch.testing.assert_close(lm.tokens, bd.tokens, atol=1e-5, rtol=1e-5)

    reference = torch.log_softmax(torch.randn(k, generator=torch.Generator().manual_seed(1)), 0)[arms]
    losses = []
    for logps in (lm, bd):
        seq = logps.sum()
        loss, _, _ = dpo_loss(seq[:8], seq[8:], reference[:8], reference[8:], beta=0.1)
        loss.mean().backward()
        losses.append(loss.mean().detach())
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-5)
    # d loss / d logits at the prompt's last position (the state before the one completion token), summed over
    # the rows that share the prompt. It is the second to last position the LM head saw, whether the scoring
    # forward kept every position's logits or only those from there on (logits_to_keep).
    lm_grad = captured[0].grad[:, -2].sum(0)
    torch.testing.assert_close(lm_grad, bandit.logits.grad, atol=1e-6, rtol=1e-4)


def test_response_token_ids_restrict_sampling_and_scoring():
    """A 2-token LM restricted to tokens {3, 2}: samples hold only them, and the probabilities of the three
    completions of length <= 2 over that alphabet (ended or cut) sum to 1, so pi is a distribution over them."""
    policy = CausalLMPolicy(tiny_model(), 0, 2, max_new_tokens=2, response_token_ids=torch.tensor([3, 2]))
    prompt = torch.tensor([1, 5])
    samples = policy.sample([prompt], 64, torch.Generator().manual_seed(0))
    assert set(samples.tokens[samples.mask > 0].tolist()) <= {2, 3}
    every = TokenCompletions(torch.tensor([[2, 0], [3, 2], [3, 3]]), torch.tensor([[1.0, 0], [1, 1], [1, 1]]))
    with torch.no_grad():
        total = policy.logprobs([prompt] * 3, every).sum().exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0))
    unrestricted = CausalLMPolicy(policy.model, 0, 2, max_new_tokens=2)
    with torch.no_grad():
        assert unrestricted.logprobs([prompt] * 3, every).sum().exp().sum() < 0.99
    with pytest.raises(DataError, match="outside the policy's response_token_ids"):
        policy.logprobs([prompt], TokenCompletions(torch.tensor([[4, 2]]), torch.ones(1, 2)))


@pytest.mark.parametrize("ids", [[3, 4], [], [2, 99], [-1, 2]])
def test_bad_response_token_ids_are_config_errors(ids):
    with pytest.raises(ConfigError, match="response_token_ids"):
        CausalLMPolicy(tiny_model(), 0, 2, 4, response_token_ids=torch.tensor(ids, dtype=torch.long))


def test_value_model_reads_the_state_before_each_token():
    model = tiny_model()
    value = CausalLMValue(model, pad_token_id=0)
    torch.nn.init.normal_(value.head.weight)
    prompts = [torch.tensor([1, 5]), torch.tensor([1, 3, 4])]
    completions = TokenCompletions(torch.tensor([[6, 2, 0], [7, 7, 2]]), torch.tensor([[1.0, 1, 0], [1, 1, 1]]))
    values = value(prompts, completions)
    assert values.shape == (2, 3) and values[0, 2] == 0
    hidden = model.transformer(torch.tensor([[1, 5, 6]])).last_hidden_state  # V before token 0 and token 1
    torch.testing.assert_close(values[0, :2], value.head(hidden[0, 1:3]).squeeze(-1), atol=1e-5, rtol=1e-5)
    values.sum().backward()
    assert value.head.weight.grad is not None


# ---- bad input -------------------------------------------------------------------------------------------
def test_prompt_longer_than_the_context_is_a_data_error(length_task):
    policy = length_task.make_reference()
    long_prompt = torch.ones(20, dtype=torch.long)  # 20 + 24 new tokens > 32 positions
    with pytest.raises(DataError, match="context.*Fix: shorten the prompts"):
        policy.sample([long_prompt], 1, torch.Generator().manual_seed(0))
    completions = TokenCompletions(torch.full((1, 24), 5), torch.ones(1, 24))
    with pytest.raises(DataError, match="exceeds the model's context"):
        policy.logprobs([long_prompt], completions)
    with pytest.raises(DataError, match="non-empty 1-D"):
        policy.sample([torch.tensor([], dtype=torch.long)], 1, torch.Generator())
    with pytest.raises(DataError, match="one prompt per completion"):
        policy.logprobs([long_prompt, long_prompt], completions)


def test_tokenizer_model_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="vocabulary.*Fix: build the model with vocab_size"):
        check_tokenizer_matches(CharTokenizer(), tiny_model(vocab_size=50))
    check_tokenizer_matches(CharTokenizer(), tiny_model(vocab_size=CharTokenizer().vocab_size))
    with pytest.raises(DataError, match="outside the vocabulary"):
        CharTokenizer().encode("1+2=?")


def test_bad_task_arguments_are_config_errors(cache_dir):
    with pytest.raises(ConfigError, match="task.reward=length"):
        SyntheticLMTask(reward="length", cache_dir=cache_dir)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        SyntheticLMTask(max_new_tokens=10, max_corpus_length=20, cache_dir=cache_dir)
    with pytest.raises(ConfigError, match="label_noise_beta"):
        SyntheticLMTask(label_noise_beta=-1.0, cache_dir=cache_dir)
    with pytest.raises(ConfigError, match="temperature"):
        CausalLMPolicy(tiny_model(), 0, 2, 4, temperature=0.0)


def test_end_token_only_completion_has_length_zero_and_one_scored_token(length_task):
    tok = length_task.tokenizer
    empty = TokenCompletions(torch.tensor([[tok.eos_id] + [tok.pad_id] * 23]), torch.tensor([[1.0] + [0.0] * 23]))
    prompt = length_task.sample_prompts(1, torch.Generator().manual_seed(0))
    lengths, ended = completion_lengths(empty, tok.eos_id)
    assert lengths.item() == 0 and ended.item()
    assert length_task.reward(prompt, empty).item() == 1.0  # min_length's optimum
    logps = length_task.make_reference().logprobs(prompt, empty)
    assert logps.mask.sum() == 1 and torch.isfinite(logps.sum()).all() and logps.sum().item() < 0
    # A completion that never ends counts max_new_tokens and gets min_length's worst reward.
    never = TokenCompletions(torch.full((1, 24), tok.ids["a"]), torch.ones(1, 24))
    assert completion_lengths(never, tok.eos_id)[0].item() == 24
    assert length_task.reward(prompt, never).item() == 0.0


# ---- rewards and data ------------------------------------------------------------------------------------
def test_rewards_lie_in_the_unit_interval_and_arithmetic_is_exact(cache_dir):
    tok = CharTokenizer()
    task = SyntheticLMTask(reward="mean_length", cache_dir=cache_dir)
    lengths = torch.arange(25)
    tokens = torch.full((25, 24), tok.ids["a"])
    mask = (torch.arange(24)[None] <= lengths[:, None]).float()
    tokens[lengths[:-1], lengths[:-1]] = tok.eos_id
    completions = TokenCompletions(torch.where(mask > 0, tokens, 0), mask)
    prompts = [tok.encode("abcd>", bos=True)] * 25
    rewards = task.reward(prompts, completions)
    assert rewards.min() >= 0 and rewards.max() == 1.0 and rewards.argmax().item() == task.target_length
    task.reward_name = "min_length"
    assert torch.allclose(task.reward(prompts, completions), 1 - lengths / 24)

    arithmetic = SyntheticLMTask(reward="arithmetic", cache_dir=cache_dir)
    answers = ["19", "18", "019", "1"]
    rows = [torch.cat([tok.encode(a), torch.tensor([tok.eos_id])]) for a in answers]
    rows.append(tok.encode("19"))  # the right digits, but it never ends
    completions = TokenCompletions.cat([TokenCompletions(r[None], torch.ones(1, len(r))) for r in rows])
    scores = arithmetic.reward([tok.encode("12+7=", bos=True)] * 5, completions)
    assert scores.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def completions_of(texts: list[str], ends: list[bool]) -> TokenCompletions:
    tok = CharTokenizer()
    rows = [
        torch.cat([tok.encode(t), torch.tensor([tok.eos_id] if end else [], dtype=torch.long)])
        for t, end in zip(texts, ends, strict=True)
    ]
    return TokenCompletions.cat([TokenCompletions(r[None], torch.ones(1, len(r))) for r in rows])


@pytest.mark.parametrize(
    ("prompt", "text", "ends", "expected"),
    [
        ("abcd>", "efg", True, True),
        ("abcd>", "", True, True),  # the empty answer is well formed
        ("abcd>", "efh", True, False),  # a wrong letter
        ("abcd>", "ef1", True, False),  # a token the corpus never shows
        ("wxyz>", "abc", True, True),  # the alphabet wraps around
        ("abcd>", "efghijklmnopqrstuvwxyzab", False, True),  # right letters, cut at max_new_tokens
        ("12+7=", "19", True, True),
        ("12+7=", "17", True, True),  # wrong, but a number: well formed
        ("12+7=", "1+", True, False),
        ("12+7=", "19", False, False),  # never ends
        ("12+7=", "", True, False),  # no digits
    ],
)
def test_well_formed(cache_dir, prompt, text, ends, expected):
    reward = "arithmetic" if "+" in prompt else "mean_length"
    task = SyntheticLMTask(reward=reward, cache_dir=cache_dir)
    prompts = [task.tokenizer.encode(prompt, bos=True)]
    assert task.well_formed(prompts, completions_of([text], [ends])).tolist() == [expected]


def test_arithmetic_outcomes_are_the_answer_error(cache_dir):
    task = SyntheticLMTask(reward="arithmetic", cache_dir=cache_dir)
    texts, ends = ["19", "17", "18", "21", "22", "1+", "19"], [True, True, True, True, True, True, False]
    prompts = [task.tokenizer.encode("12+7=", bos=True)] * len(texts)
    labels = ["-2", "-1", "0", "+1", "+2", "other"]
    outcomes = task._outcomes(prompts, completions_of(texts, ends))
    assert [labels[i] for i in outcomes] == ["0", "-2", "-1", "+2", "other", "other", "other"]


def test_bradley_terry_label_noise():
    beta, gap, n = 0.1, 0.1, 40_000
    generator = torch.Generator().manual_seed(0)
    better = bradley_terry_scores(torch.full((n,), gap), beta, generator)
    worse = bradley_terry_scores(torch.zeros(n), beta, generator)
    assert abs((better > worse).float().mean().item() - 1 / (1 + math.exp(-gap / beta))) < 0.01


def test_offline_data_is_reference_samples_with_optional_noisy_labels(cache_dir, length_task):
    data = length_task.offline_data(4, 3, torch.Generator().manual_seed(0))
    assert len(data) == 12 and data.samples_per_prompt == 3 and "true_reward" not in data.extras
    torch.testing.assert_close(data.rewards, length_task.reward(data.prompts, data.completions))
    noisy = SyntheticLMTask(reward="min_length", cache_dir=cache_dir, label_noise_beta=0.5)
    data = noisy.offline_data(4, 3, torch.Generator().manual_seed(0))
    assert not torch.equal(data.rewards, data.extras["true_reward"])


# ---- the cache -------------------------------------------------------------------------------------------
def test_cached_reference_is_reused_and_a_damaged_file_is_rebuilt(tmp_path):
    small = dict(cache_dir=str(tmp_path), corpus_size=256, reference_steps=10)
    first = SyntheticLMTask(**small)
    first.make_reference()
    assert first.reference_built and first.reference_path.exists()
    stamp, builds = first.reference_path.stat().st_mtime_ns, reference_module.build_count

    second = SyntheticLMTask(**small)
    second.make_reference()
    assert not second.reference_built and reference_module.build_count == builds
    assert first.reference_path.stat().st_mtime_ns == stamp
    for a, b in zip(first.reference_model.parameters(), second.reference_model.parameters(), strict=True):
        assert torch.equal(a, b)

    data = bytearray(first.reference_path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"garbage!" * 8
    first.reference_path.write_bytes(bytes(data))
    third = SyntheticLMTask(**small)
    with pytest.warns(UserWarning, match="damaged.*checksum mismatch.*rebuilding"):
        third.make_reference()
    assert third.reference_built and reference_module.build_count == builds + 1
    for a, b in zip(first.reference_model.parameters(), third.reference_model.parameters(), strict=True):
        assert torch.equal(a, b)  # reproducible from its seed
    fourth = SyntheticLMTask(**small)
    fourth.make_reference()
    assert not fourth.reference_built  # the rebuilt file is intact again


# ---- evaluation and artifacts ----------------------------------------------------------------------------
def test_evaluate_and_artifacts(length_task, tmp_path):
    policy = length_task.make_policy()
    result = length_task.evaluate(policy, torch.Generator().manual_seed(0))
    for key in ("reward", "kl_ref", "mean_length", "length_median", "ended_fraction"):
        assert math.isfinite(result[key])
    assert abs(result["kl_ref"]) < 1e-5  # the policy starts at the reference
    assert 8 < result["mean_length"] < 18  # the corpus law: mode 12, mean about 13.5
    length_task.artifacts(policy, tmp_path)
    lines = (tmp_path / "distribution.csv").read_text().splitlines()
    assert lines[0] == "completion,reward,reference,policy,optimum" and len(lines) == 1 + 25
    assert abs(sum(float(line.split(",")[2]) for line in lines[1:]) - 1) < 1e-4
    assert 0.5 < result["well_formed"] <= 1.0  # the reference writes the alphabet, with a few slips


def test_arithmetic_artifact_is_the_answer_error_with_its_reward(cache_dir, tmp_path):
    task = SyntheticLMTask(reward="arithmetic", cache_dir=cache_dir, eval_prompts=8)
    task.artifacts(task.make_policy(), tmp_path)
    rows = [line.split(",") for line in (tmp_path / "distribution.csv").read_text().splitlines()]
    assert rows[0] == ["completion", "reward", "reference", "policy", "optimum"]
    assert [r[0] for r in rows[1:]] == ["-2", "-1", "0", "+1", "+2", "other"]
    assert [float(r[1]) for r in rows[1:]] == [0, 0, 1, 0, 0, 0]
    for column in (2, 3, 4):
        assert abs(sum(float(r[column]) for r in rows[1:]) - 1) < 1e-4
    right = rows[3]
    assert right[2] == right[3] and float(right[4]) > float(right[2])  # pi* tilts the reference towards 0


# ---- every objective and regime, through the real configs --------------------------------------------------
def compose_and_train(cache_dir: str, overrides: list[str]) -> tuple[dict, list[dict]]:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from alignlab.runs.cli import build

    with initialize_config_module("alignlab.conf", version_base="1.3"):
        cfg = compose("config", overrides=["task=synthetic_llm", f"task.cache_dir={cache_dir}", *overrides])
    assert cfg.threads == 1
    algo = OmegaConf.to_container(cfg.algo, resolve=True)
    algo.pop("name")
    sampling = SamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True))
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    task = build(resolve_reward(OmegaConf.to_container(cfg.task, resolve=True)))
    evaluation, rows, _ = train(task, build(algo), sampling, train_cfg, seed=0)
    return evaluation, rows


TINY = [
    "train.iterations=2",
    "train.eval_every=2",
    "train.progress=false",
    "sampling.prompts_per_round=2",
    "sampling.samples_per_prompt=3",
    "sampling.offline_prompts=4",
    "task.eval_prompts=2",
    "task.eval_samples_per_prompt=2",
]


@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("algo", ALGOS)
def test_every_objective_runs_on_every_reward(cache_dir, algo, reward):
    evaluation, rows = compose_and_train(cache_dir, [f"algo={algo}", f"task.reward={reward}", "sampling=online", *TINY])
    assert len(rows) == 3 and 0.0 <= evaluation["reward"] <= 1.0 and math.isfinite(evaluation["kl_ref"])
    assert "mean_length" in evaluation


@pytest.mark.parametrize("regime", ("offline", "semi_online"))
@pytest.mark.parametrize("algo", ALGOS)
def test_every_objective_runs_in_every_regime(cache_dir, algo, regime):
    evaluation, rows = compose_and_train(
        cache_dir, [f"algo={algo}", "task.reward=min_length", f"sampling={regime}", *TINY]
    )
    assert len(rows) == 3 and math.isfinite(evaluation["reward"])


# ---- does it learn ---------------------------------------------------------------------------------------
def dpo_run(task: SyntheticLMTask, regime: str, iterations: int, lr: float) -> dict:
    sampling = SamplingConfig(
        name=regime,
        sync_every=None if regime == "offline" else 1,
        prompts_per_round=8,
        samples_per_prompt=4,
        offline_prompts=256,
    )
    config = TrainConfig(iterations=iterations, lr=lr, eval_every=iterations, progress=False)
    evaluation, _, _ = train(task, DPO(beta=0.1), sampling, config, seed=0)
    return evaluation


def test_online_dpo_shortens_responses_and_beats_offline_dpo(length_task):
    reference = length_task.evaluate(length_task.make_reference(), torch.Generator().manual_seed(0))
    online = dpo_run(length_task, "online", 30, 2e-4)
    offline = dpo_run(length_task, "offline", 30, 2e-4)
    assert online["mean_length"] < 0.25 * reference["mean_length"]
    assert online["mean_length"] < offline["mean_length"] - 1.0
    assert online["reward"] > offline["reward"]


@pytest.fixture(scope="module")
def mean_length_runs(cache_dir):
    """Online and offline DPO on mean_length, 80 iterations at lr 1e-4, with the corpus's response tokens
    and with the whole vocabulary (benchmarks/tier2_mean_length.md)."""
    runs = {}
    for vocabulary in ("corpus", "all"):
        task = SyntheticLMTask(reward="mean_length", cache_dir=cache_dir, response_vocabulary=vocabulary)
        runs["reference"] = task.evaluate(task.make_reference(), torch.Generator().manual_seed(0))
        for regime in ("online", "offline") if vocabulary == "corpus" else ("offline",):
            runs[regime, vocabulary] = dpo_run(task, regime, 80, 1e-4)
    return runs


def test_online_and_offline_dpo_are_about_as_good_on_mean_length(mean_length_runs):
    online, offline = mean_length_runs["online", "corpus"], mean_length_runs["offline", "corpus"]
    assert abs(online["reward"] - offline["reward"]) < 0.05
    assert min(online["reward"], offline["reward"]) > mean_length_runs["reference"]["reward"] + 0.1


def test_offline_dpo_collapses_on_mean_length_when_any_token_may_be_written(mean_length_runs):
    """Likelihood displacement: the mass goes to tokens the corpus never shows, the policy leaves its language
    and stops at the corpus cap (20), far from the target 13."""
    collapsed, reference = mean_length_runs["offline", "all"], mean_length_runs["reference"]
    assert collapsed["reward"] < reference["reward"] - 0.1
    assert collapsed["well_formed"] < 0.1 and collapsed["mean_length"] > 17
    assert collapsed["kl_ref"] > 20


def test_online_rloo_raises_arithmetic_accuracy(cache_dir):
    from alignlab.core.objectives import RLOO

    task = SyntheticLMTask(reward="arithmetic", cache_dir=cache_dir)
    reference = task.evaluate(task.make_reference(), torch.Generator().manual_seed(0))
    sampling = SamplingConfig(prompts_per_round=8, samples_per_prompt=4)
    evaluation, _, _ = train(
        task, RLOO(), sampling, TrainConfig(iterations=150, lr=1e-4, progress=False, eval_every=150), seed=0
    )
    assert evaluation["accuracy"] > reference["accuracy"] + 0.08


def test_command_line_run_writes_mean_length_and_the_distribution(cli, cache_dir):
    from conftest import read_summary

    cli(
        "task=synthetic_llm",
        "task.reward=mean_length",
        "algo=dpo",
        "sampling=online",
        f"task.cache_dir={cache_dir}",
        "train.iterations=3",
        "plot=false",
        f"hydra.run.dir={cli.dir}/run",
    )
    summary = read_summary(cli.dir / "run")
    assert summary["task"] == "synthetic_llm" and 0 < summary["mean_length"] < 24
    header = (cli.dir / "run" / "distribution.csv").read_text().splitlines()[0]
    assert header == "completion,reward,reference,policy,optimum"
