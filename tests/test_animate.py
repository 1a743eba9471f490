"""alignlab-plot --animate: a GIF of the distribution at each evaluation, beside the reward curve."""

import pytest
from PIL import Image

from alignlab.plots.plot import main as plot_main


def test_animate_writes_one_frame_per_evaluation(cli, capsys):
    cli("train.iterations=30", "train.eval_every=3", "train.progress=false", "plot=false", "hydra.run.dir=run")
    run_dir = cli.dir / "run"
    plot_main(["--animate", str(run_dir)])
    gif = run_dir / "animation.gif"
    assert capsys.readouterr().out.strip() == str(gif)
    with Image.open(gif) as image:
        assert image.n_frames == 11 and image.size[0] > image.size[1]  # the reference (iteration 0), 10 evaluations


def test_animate_without_a_record_names_the_fix(cli):
    cli("train.iterations=5", "train.progress=false", "plot=false", "record_distribution=false", "hydra.run.dir=run")
    with pytest.raises(SystemExit, match="distributions.csv does not exist.*Fix: run with record_distribution=true"):
        plot_main(["--animate", str(cli.dir / "run")])
