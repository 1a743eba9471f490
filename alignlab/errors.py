"""Errors that stop a run with one line naming the problem and the fix."""


class AlignlabError(Exception):
    """A problem with the user's input. The message names the problem and the fix, on one line."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}. Fix: {fix}.")
        self.problem = problem
        self.fix = fix


class ConfigError(AlignlabError):
    """An impossible or invalid configuration."""


class RewardError(AlignlabError):
    """A reward function returned something unusable (NaN, wrong shape)."""


class DataError(AlignlabError):
    """A malformed dataset, prompt or completion."""
