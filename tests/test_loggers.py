"""Experiment tracking: what TensorBoard and W&B received, read back with their own readers, equals metrics.csv."""

import csv
import json
import struct
import sys
import warnings

import pandas as pd
import pytest

from alignlab.errors import ConfigError
from alignlab.runs.loggers import DISTRIBUTIONS, RunRecorder, WandbLogger, make_loggers

FAST = ["train.iterations=12", "train.progress=false", "plot=false"]


def metrics_csv(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").set_index("iteration")


def test_tensorboard_receives_every_metric_of_metrics_csv_and_the_config(cli):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli(*FAST, "logger=[csv,tensorboard]", "hydra.run.dir=run", "algo=dpo", "algo.beta=0.2")
    run_dir = cli.dir / "run"
    expected = metrics_csv(run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == set(expected.columns)
    for column in expected.columns:
        logged = pd.Series({e.step: e.value for e in events.Scalars(column)}, dtype=float)
        csv_values = expected[column].dropna()
        assert list(logged.index) == list(csv_values.index), column
        assert logged.to_numpy() == pytest.approx(csv_values.to_numpy(), rel=1e-6, abs=1e-7), column
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["algo.beta"].number_value == 0.2 and hparams["algo.name"].string_value == "dpo"
    assert hparams["train.iterations"].number_value == 12


def wandb_records(path):
    """W&B's offline run file (a LevelDB-style log of W&B's own protobuf Records), decoded with wandb's proto."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding to the end of a block
            pos += left
            continue
        pending = (b"" if kind in (1, 2) else pending) + data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last fragment of one
            yield wandb_internal_pb2.Record.FromString(pending)


def read_wandb_run(run_dir):
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    run, history, config = None, {}, {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config.update({u.key: u.value_json for u in run.config.update})
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): float(item.value_json) for item in record.history.item}
            history[int(row.pop("_step"))] = row
    return run, pd.DataFrame.from_dict(history, orient="index"), config


def test_wandb_offline_sweep_is_one_group_with_the_metrics_of_metrics_csv(cli):
    pytest.importorskip("wandb")
    cli("-m", *FAST, "algo=dpo,ipo", "logger=wandb", "experiment_name=wb", "hydra.sweep.dir=sweep")
    run_dirs = sorted(p.parent for p in (cli.dir / "sweep").rglob("metrics.csv"))
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        run, history, config = read_wandb_run(run_dir)
        assert run.run_group == "wb" and run.display_name == run_dir.name and run.project == "alignlab"
        expected = metrics_csv(run_dir)
        for column in expected.columns:
            csv_values = expected[column].dropna()
            assert history[column].dropna().to_numpy() == pytest.approx(csv_values.to_numpy(), rel=1e-9), column
        algo = run_dir.name.split(",")[0].removeprefix("algo=")
        assert json.loads(config["algo"])["name"] == algo and json.loads(config["train"])["iterations"] == 12


NO_NETWORK = """
import atexit, socket, sys
attempts = []
atexit.register(lambda: print("network attempts:", attempts))  # registered first, so it runs last, after W&B's own
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
LOCAL = ("localhost", "127.0.0.1", "::1", None)
def getaddrinfo(host, *args, **kwargs):
    if host not in LOCAL:
        attempts.append(host)
        raise OSError("the network is blocked in this test")
    return real_getaddrinfo(host, *args, **kwargs)
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
        attempts.append(address[0])
        raise OSError("the network is blocked in this test")
    return real_connect(self, address)
socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
from alignlab.runs.cli import main
sys.argv = ["alignlab", *sys.argv[1:]]
main()
"""


def test_wandb_offline_by_default_makes_no_connection_attempt(tmp_path):
    """With WANDB_MODE unset, wandb.init(mode="offline") alone still resolved W&B's server name at exit; the run
    must contact nothing (an offline cluster would stall on it)."""
    pytest.importorskip("wandb")
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    args = [*FAST, "train.iterations=2", "logger=wandb", "hydra.run.dir=run"]
    proc = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "network attempts: []"
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_wandb_asked_to_go_online_without_a_server_warns_and_stays_offline(tmp_path):
    pytest.importorskip("wandb")
    with pytest.warns(UserWarning, match="cannot be reached.*logged offline.*wandb sync"):
        logger = WandbLogger(tmp_path, {"a": 1}, name="x", group=None, mode="online", host="127.0.0.1")
    try:
        assert logger.run.settings.mode == "offline"
    finally:
        logger.close()


@pytest.mark.parametrize(
    "env, mode, expected",
    [
        ({}, None, "offline"),  # nothing asked: offline, contacting nothing
        ({"WANDB_MODE": "disabled"}, None, "disabled"),  # the user's own setting is kept when the key is null
        ({"WANDB_MODE": "online"}, None, "offline"),  # ... online too (the unreachable host then warns)
        ({"WANDB_MODE": "online"}, "disabled", "disabled"),  # the key wins over the environment
    ],
)
def test_wandb_mode_null_is_the_users_wandb_mode(tmp_path, monkeypatch, env, mode, expected):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = WandbLogger(tmp_path, {"a": 1}, name="x", group=None, mode=mode, host="127.0.0.1")
    try:
        assert logger.run.settings.mode == expected
        went_online = env.get("WANDB_MODE") == "online" and mode is None
        assert any("cannot be reached" in str(w.message) for w in caught) == went_online
    finally:
        logger.close()


@pytest.mark.parametrize("logger, module", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_a_logger_whose_package_is_missing_names_the_pip_command(tmp_path, monkeypatch, logger, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    with pytest.raises(ConfigError, match=rf"logger={logger} needs the {module} package\. Fix: pip install"):
        make_loggers({logger: {}}, tmp_path, {}, "sweep")


def test_distributions_csv_has_one_table_per_evaluation_ending_at_distribution_csv(cli):
    cli(*FAST, "train.eval_every=5", "hydra.run.dir=run")
    run_dir = cli.dir / "run"
    record = pd.read_csv(run_dir / DISTRIBUTIONS)
    assert sorted(record["iteration"].unique()) == [0, 5, 10, 12]  # iteration 0: the reference
    assert (record.groupby("iteration").size() == 8).all()
    final = pd.read_csv(run_dir / "distribution.csv")
    last = record[record["iteration"] == 12].drop(columns="iteration").reset_index(drop=True)
    pd.testing.assert_frame_equal(last, final, rtol=1e-5)
    assert record.groupby("iteration")["policy"].sum().to_numpy() == pytest.approx(1.0, abs=1e-4)


def test_a_resumed_run_keeps_earlier_distributions_and_drops_a_torn_line(tmp_path):
    class Task:
        def distribution(self, policy):
            return [{"completion": 0, "policy": policy}, {"completion": 1, "policy": 1 - policy}]

    (tmp_path / DISTRIBUTIONS).write_text(
        "iteration,completion,policy\n1,0,0.5\n1,1,0.5\n2,0,0.75\n2,1,0.25\n3,0,0.875\n3,1\n"
    )
    recorder = RunRecorder([], tmp_path, Task())
    recorder({"iteration": 3, "eval/reward": 0.1}, 0.25)
    recorder({"iteration": 4, "train/reward": 0.1}, 0.5)  # no evaluation in this row: nothing recorded
    with open(tmp_path / DISTRIBUTIONS) as f:
        rows = [(r["iteration"], r["completion"], r["policy"]) for r in csv.DictReader(f)]
    assert rows == [("1", "0", "0.5"), ("1", "1", "0.5"), ("2", "0", "0.75"), ("2", "1", "0.25")] + [
        ("3", "0", "0.25"),
        ("3", "1", "0.75"),
    ]


def test_record_distribution_false_writes_no_distributions(cli):
    with warnings.catch_warnings():
        cli(*FAST, "record_distribution=false", "hydra.run.dir=run")
    assert not (cli.dir / "run" / DISTRIBUTIONS).exists()
