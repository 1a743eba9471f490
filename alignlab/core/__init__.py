"""The algorithm, with no file I/O of its own: log-prob types, the losses, target builders, the objectives, the
sampling regimes, the optimizer and the training loop. It knows no tier: a tier hands it a policy, a reference,
a reward, prompts, data and an evaluator."""
