"""The Ray launcher: conf/hydra/launcher/ray_cluster.yaml composes (plugin or not); with the plugin installed, a
sweep runs on a local Ray instance that the test starts."""

import pytest
from omegaconf import OmegaConf

from alignlab.runs.api import compose_config


def test_the_ray_cluster_launcher_config_composes():
    cfg = compose_config("hydra/launcher=ray_cluster")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address == "auto" and launcher.ray.remote.num_cpus == 1
    try:
        from hydra_plugins.hydra_ray_launcher._config import RayLauncherConf
    except ImportError:
        return
    OmegaConf.merge(OmegaConf.structured(RayLauncherConf), launcher)  # the plugin's own schema accepts it


@pytest.mark.slow
def test_a_sweep_runs_on_a_local_ray_instance(cli):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    args = ["-m", "algo=dpo,ipo", "hydra/launcher=ray", "train.iterations=5", "train.progress=false", "plot=false"]
    proc = cli(*args, "hydra.sweep.dir=sweep", "+hydra.launcher.ray.init.num_cpus=2")
    assert "Ray Launcher is launching 2 jobs" in proc.stdout + proc.stderr
    assert sorted(p.parent.name for p in (cli.dir / "sweep").glob("*/summary.json")) == [
        "algo=dpo,train.iterations=5",
        "algo=ipo,train.iterations=5",
    ]
