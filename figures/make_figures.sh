#!/usr/bin/env bash
# Regenerates figures/ from the code as it is: the default run, the paper's 100-arm bandit, then the findings
# report on the bandit (alignlab-report: every finding's sweep, 10 seeds; about 10 minutes on 2 idle cores),
# whose figures are copied here and whose verdicts become docs/verdicts/bandit.json and docs/verdicts.md's
# tables.
#   bash figures/make_figures.sh            # keeps the report's runs in report/ (re-running resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGNLAB=${ALIGNLAB:-.venv/bin/alignlab}
PLOT=${PLOT:-.venv/bin/alignlab-plot}
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
    if [ -f "$dir/$f.png" ]; then cp "$dir/$f.png" "figures/${experiment}_$f.png"; fi
  done
  cp "$dir/final.csv" "figures/${experiment}_final.csv"
done
mkdir -p docs/verdicts
cp report/verdicts.json docs/verdicts/bandit.json
$REPORT --verdicts docs/verdicts --into docs/verdicts.md
echo "figures written to figures/, verdicts to docs/verdicts.md"
