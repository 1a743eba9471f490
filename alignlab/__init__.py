"""alignlab: preference alignment on bandits, a synthetic LM and Hugging Face models, with one interface.

Where to look first:
- `alignlab/core/losses.py`: every loss, a pure function of log-prob tensors (DPO is `dpo_loss`).
- `alignlab/core/objectives/`: each algorithm = a target builder + one of those losses.
- `alignlab/core/train.py`: the training loop (sampling regime -> reward -> targets -> updates -> metrics).
- `bandits/`: tier 1, the softmax bandit.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`alignlab.run` and `alignlab.sweep` (alignlab/runs/api.py), imported on first use: `import alignlab` stays
    light."""
    if name in ("run", "sweep", "read_run"):
        from alignlab.runs import api

        return getattr(api, name)
    raise AttributeError(f"module 'alignlab' has no attribute {name!r}")
