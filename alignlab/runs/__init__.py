"""The run machinery: the `alignlab` command (Hydra), the Python API, the config schema, trackers and tuned
settings. It composes a task, an objective and a sampling regime, and hands them to `alignlab.core.train`."""
