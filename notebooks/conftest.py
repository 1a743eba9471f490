"""Notebooks run as tests with nbmake (`pytest --nbmake notebooks`): stop in one line when their kernel is missing."""

import json

import pytest

from alignlab.runs.api import missing_kernel


def pytest_collection_modifyitems(session, config, items):
    notebooks = [item for item in items if getattr(item, "nbmake", False)]
    kernels = {config.option.nbmake_kernel} if notebooks and config.option.nbmake_kernel else set()
    for item in notebooks if not kernels else []:
        with open(item.filename) as f:
            kernels.add(json.load(f).get("metadata", {}).get("kernelspec", {}).get("name", "python3"))
    for kernel in sorted(kernels):
        problem = missing_kernel(kernel)
        if problem is not None:
            pytest.exit(f"alignlab notebooks: {problem}", returncode=4)
