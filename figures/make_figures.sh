#!/usr/bin/env bash
# Regenerates the tier-1 figures of README.md from the code as it is: the default run, then the findings
# report on the bandit (alignlab-report, every finding's sweep; a few minutes on 2 idle cores), whose
# figures and REPORT.md are copied here.
#   bash figures/make_figures.sh            # keeps the report's runs in report/ (re-running resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGNLAB=${ALIGNLAB:-.venv/bin/alignlab}
REPORT=${REPORT:-.venv/bin/alignlab-report}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The default run: online DPO on R1.
$ALIGNLAB hydra.run.dir="$out/default" train.progress=false
cp "$out/default/figure.png" figures/default_run.png
$PLOT --animate "$out/default" --out figures/animation_online_dpo_r1.gif > /dev/null

# The same run on the paper's 100-arm bandit.
$ALIGNLAB task=bandit_tajwar100 hydra.run.dir="$out/tajwar100" train.progress=false
cp "$out/tajwar100/figure.png" figures/bandit_tajwar100_run.png

# Every finding on tier 1 (resumable: report/runs/ keeps the finished runs).
$REPORT task=bandit --out report
for dir in report/figures/*/; do
  experiment=$(basename "$dir")
  for f in reward_vs_iteration reward_vs_kl logps; do
    [ -f "$dir/$f.png" ] && cp "$dir/$f.png" "figures/${experiment}_$f.png"
  done
  cp "$dir/final.csv" "figures/${experiment}_final.csv"
done
echo "figures written to figures/"
