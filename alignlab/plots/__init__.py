"""Pictures of runs and sweeps (`alignlab-plot`) and animations of a bandit policy."""
