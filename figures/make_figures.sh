#!/usr/bin/env bash
# Regenerates the tier-1 figures of README.md from the code as it is (about 2-4 minutes on 2 cores).
#   bash figures/make_figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGNLAB=${ALIGNLAB:-.venv/bin/alignlab}
PLOT=${PLOT:-.venv/bin/alignlab-plot}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The default run: online DPO on R1.
$ALIGNLAB hydra.run.dir="$out/default" train.progress=false
cp "$out/default/figure.png" figures/default_run.png
$PLOT --animate "$out/default" --out figures/animation_online_dpo_r1.gif > /dev/null

for experiment in online_vs_offline negative_gradient semi_online_sync kl_budget sample_reuse; do
  $ALIGNLAB -m experiment=$experiment hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir="$out/$experiment" > /dev/null
  $PLOT "$out/$experiment" > /dev/null
  for f in reward_vs_iteration reward_vs_kl logps; do
    [ -f "$out/$experiment/$f.png" ] && cp "$out/$experiment/$f.png" "figures/${experiment}_$f.png"
  done
  cp "$out/$experiment/final.csv" "figures/${experiment}_final.csv"
done
echo "figures written to figures/"
