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
    """A malformed dataset, prompt or completion, or a damaged run file."""


class NumericalError(AlignlabError):
    """A NaN or infinity in an evaluation or a loss: the numbers of the run would be meaningless."""


def check_range(key: str, value, interval: str, hint: str = "") -> None:
    """Raise a ConfigError naming `key` unless `value` lies in `interval`, written as in mathematics:
    "(0, inf)", "[0, 1]", "[1, inf)". A None value passes: the config types say where null is allowed."""
    if value is None:
        return
    low, high = (part.strip() for part in interval[1:-1].split(","))
    low, high = float(low.replace("inf", "Infinity")), float(high.replace("inf", "Infinity"))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    if not (above and below):  # also catches NaN
        fix = f"set {key} to a value in {interval}" + (f" ({hint})" if hint else "")
        raise ConfigError(f"{key}={value} is outside {interval}", fix)
