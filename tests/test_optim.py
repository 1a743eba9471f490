"""alignlab.core.optim.Adam is torch.optim.Adam bit for bit on CPU and reads and writes its state dicts (that it keeps
torch._dynamo out of a run: tests/test_startup.py)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from alignlab.core.optim import Adam, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = [  # lr, betas, eps
    (1e-3, (0.9, 0.999), 1e-8),
    (0.1, (0.9, 0.999), 1e-8),
    (3e-2, (0.5, 0.9), 1e-6),
    (1.0, (0.0, 0.99), 1e-3),
    (5e-4, (0.95, 0.5), 1e-12),
]


def mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))


def logits(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = torch.nn.Module()
    module.logits = torch.nn.Parameter(torch.randn(100))
    return module


def dead_units(seed: int) -> torch.nn.Module:
    """A ReLU network with 48 of its 64 hidden units dead and 8 at 1e-19: its second moments are mostly exact
    zeros, and some below float32's smallest normal, the inputs on which the step floors the square root
    (alignlab.core.optim._denominator); a layer has 4,096 weights."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU())
    model.append(torch.nn.Linear(64, 5))
    with torch.no_grad():
        model[0].bias[:48] = -100.0
        model[0].weight[48:56] = 0.0
        model[0].bias[48:56] = 1e-19
    return model


def loss_of(model: torch.nn.Module, step: int) -> torch.Tensor:
    """A loss that changes with the step (fresh data for the MLP, a moving target for the logits)."""
    generator = torch.Generator().manual_seed(step)
    if hasattr(model, "logits"):
        target = torch.softmax(torch.randn(100, generator=generator), 0)
        return -(target * torch.log_softmax(model.logits, 0)).sum()
    x = torch.randn(32, 6, generator=generator)
    y = torch.randint(0, 5, (32,), generator=generator)
    return torch.nn.functional.cross_entropy(model(x), y)


def train(model, optimizer, steps: int, first: int = 0, set_to_none: bool = True) -> None:
    for step in range(first, first + steps):
        optimizer.zero_grad(set_to_none=set_to_none)
        loss_of(model, step).backward()
        optimizer.step()


def assert_same(model_a, opt_a, model_b, opt_b) -> None:
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    assert [list(g) for g in state_a["param_groups"]] == [list(g) for g in state_b["param_groups"]]  # key order
    assert state_a["state"].keys() == state_b["state"].keys()
    for index, values in state_a["state"].items():
        assert list(values) == list(state_b["state"][index]) == ["step", "exp_avg", "exp_avg_sq"]
        for name, value in values.items():
            other = state_b["state"][index][name]
            assert value.dtype == other.dtype and value.device == other.device
            assert torch.equal(value, other), (index, name)


@pytest.mark.parametrize("make_model", [mlp, logits, dead_units])
@pytest.mark.parametrize("lr,betas,eps", SETTINGS)
def test_fifty_steps_equal_torch_adam_bit_for_bit(make_model, lr, betas, eps):
    ours_model, torch_model = make_model(0), make_model(0)
    ours = Adam(ours_model.parameters(), lr=lr, betas=betas, eps=eps)
    reference = torch.optim.Adam(torch_model.parameters(), lr=lr, betas=betas, eps=eps)
    train(ours_model, ours, 50)
    train(torch_model, reference, 50)
    assert_same(ours_model, ours, torch_model, reference)
    assert not torch.equal(next(ours_model.parameters()), next(make_model(0).parameters()))  # it did train


def test_zero_grad_without_set_to_none_and_a_parameter_without_gradient_match_torch():
    ours_model, torch_model = mlp(1), mlp(1)
    ours_model.unused = torch.nn.Parameter(torch.ones(3))
    torch_model.unused = torch.nn.Parameter(torch.ones(3))
    ours, reference = Adam(ours_model.parameters(), lr=0.01), torch.optim.Adam(torch_model.parameters(), lr=0.01)
    train(ours_model, ours, 20, set_to_none=False)
    train(torch_model, reference, 20, set_to_none=False)
    assert_same(ours_model, ours, torch_model, reference)
    unused = [i for i, p in enumerate(ours_model.parameters()) if p is ours_model.unused]
    assert unused and unused[0] not in ours.state_dict()["state"]  # no gradient, no state: as with torch


@pytest.mark.parametrize("make_model", [mlp, logits])
@pytest.mark.parametrize("direction", ["torch -> ours", "ours -> torch"])
def test_a_state_dict_of_either_optimizer_resumes_identically_in_the_other(make_model, direction):
    """Train 20 steps, save model and optimizer as a checkpoint does (torch.save), load them into the other
    optimizer, train 30 more: the result equals 50 steps of torch's Adam alone."""
    first, second = (torch.optim.Adam, Adam) if direction == "torch -> ours" else (Adam, torch.optim.Adam)
    model = make_model(2)
    optimizer = first(model.parameters(), lr=0.05)
    train(model, optimizer, 20)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed_model = make_model(3)  # other initial weights: everything must come from the checkpoint
    resumed_model.load_state_dict(saved["model"])
    resumed = second(resumed_model.parameters(), lr=0.5)  # the saved lr wins, as in torch
    resumed.load_state_dict(saved["optimizer"])
    train(resumed_model, resumed, 30, first=20)

    straight_model = make_model(2)
    straight = torch.optim.Adam(straight_model.parameters(), lr=0.05)
    train(straight_model, straight, 50)
    assert_same(resumed_model, resumed, straight_model, straight)


@pytest.mark.parametrize(
    "setting", [{"amsgrad": True}, {"weight_decay": 0.1}, {"maximize": True}, {"foreach": True}, {"fused": True}]
)
def test_a_torch_state_dict_with_settings_it_does_not_implement_is_refused(setting):
    model = mlp(4)
    reference = torch.optim.Adam(model.parameters(), lr=0.01)
    state = reference.state_dict()
    state["param_groups"][0].update(setting)
    with pytest.raises(ValueError, match=next(iter(setting))):
        Adam(model.parameters(), lr=0.01).load_state_dict(state)


def test_load_state_dict_refuses_another_number_of_parameters():
    state = Adam(mlp(5).parameters()).state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        Adam(logits(5).parameters()).load_state_dict(state)


def test_make_optimizer_takes_ours_on_cpu_and_torch_otherwise():
    assert type(make_optimizer(list(mlp(6).parameters()), lr=0.1)) is Adam
    complex_param = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    assert type(make_optimizer([complex_param], lr=0.1)) is torch.optim.Adam
    # a deep copy of the settings: what train() records in a checkpoint is torch's group, key for key
    ours = make_optimizer(list(mlp(6).parameters()), lr=0.1)
    theirs = torch.optim.Adam(mlp(6).parameters(), lr=0.1)
    assert copy.deepcopy(ours.state_dict()["param_groups"]) == theirs.state_dict()["param_groups"]


def test_the_dead_units_model_has_the_second_moments_the_floor_is_for():
    model = dead_units(0)
    optimizer = Adam(model.parameters(), lr=1e-3)
    train(model, optimizer, 1)
    moments = torch.cat([optimizer.state[p]["exp_avg_sq"].flatten() for p in model.parameters()])
    assert (moments == 0).float().mean() > 0.5
    assert ((moments > 0) & (moments < 2.0**-126)).any()  # subnormal: below float32's smallest normal
    assert model[2].weight.numel() >= 4096
