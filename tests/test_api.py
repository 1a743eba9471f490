"""alignlab.run / alignlab.sweep: the CLI's config and code path from Python, returning DataFrames."""

import pandas as pd
import pytest

import alignlab
from alignlab.errors import ConfigError

FAST = ["train.iterations=20", "train.progress=false"]


def test_run_gives_the_same_numbers_as_the_command_line(cli, tmp_path):
    cli(*FAST, "plot=false", "algo=ipo", "sampling=offline", "hydra.run.dir=cli_run")
    from_cli = pd.read_csv(cli.dir / "cli_run" / "metrics.csv")
    metrics = alignlab.run(*FAST, "algo=ipo", "sampling=offline", run_dir=tmp_path / "api_run")
    assert len(metrics) == 21 and (metrics["seed"] == 0).all()  # iteration 0 (the reference) and 20
    for column in ("eval/reward", "eval/kl_ref", "logps/chosen", "loss/total"):
        assert metrics[column].tolist() == pytest.approx(from_cli[column].tolist(), rel=1e-12, nan_ok=True), column
    assert metrics.attrs["summary"]["algo"] == "ipo" and metrics.attrs["summary"]["sampling"] == "offline"
    assert (tmp_path / "api_run" / ".hydra" / "config.yaml").exists()


def test_a_finished_run_is_read_back_not_run_again(tmp_path):
    first = alignlab.run(*FAST, run_dir=tmp_path / "r")
    (tmp_path / "r" / "metrics.csv").write_text("iteration,eval/reward\n1,0.5\n")  # a marker: not re-run
    again = alignlab.run(*FAST, run_dir=tmp_path / "r")
    assert again["eval/reward"].tolist() == [0.5]
    forced = alignlab.run(*FAST, run_dir=tmp_path / "r", force=True)
    assert forced["eval/reward"].tolist() == first["eval/reward"].tolist()


def test_sweep_has_one_column_per_grid_key_and_every_seed(tmp_path):
    runs = alignlab.sweep({"sampling": ["online", "offline"], "algo.beta": [0.1, 1.0]}, *FAST, "num_seeds=2")
    assert len(runs) == 2 * 2 * 2 * 21  # iterations 0..20
    counts = runs.groupby(["sampling", "algo.beta", "seed"]).size()
    assert counts.to_dict() == {(s, b, k): 21 for s in ("offline", "online") for b in (0.1, 1.0) for k in (0, 1)}
    final = runs[runs["iteration"] == 20].set_index(["sampling", "algo.beta", "seed"])["eval/reward"]
    assert final.nunique() == 8, "every configuration and seed is its own run"


def test_the_api_raises_the_one_line_config_error():
    with pytest.raises(ConfigError, match="train.lr=-1.0 must be positive. Fix: set train.lr"):
        alignlab.run(*FAST, "train.lr=-1.0")
