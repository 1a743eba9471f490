"""alignlab: preference alignment on bandits, a synthetic LM and Hugging Face models, with one interface.

Where to look first:
- `alignlab/losses.py`: every loss, a pure function of log-prob tensors (DPO is `dpo_loss`).
- `alignlab/objectives/`: each algorithm = a target builder + one of those losses.
- `alignlab/train.py`: the training loop (sampling regime -> reward -> targets -> updates -> metrics).
- `bandits/`: tier 1, the softmax bandit.
"""

__version__ = "0.1.0"
