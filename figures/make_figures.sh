#!/usr/bin/env bash
# Regenerates figures/ from the code as it is, and the verdict tables of docs/verdicts.md from the findings
# reports it runs (alignlab-report: every finding's sweep on a task), one task after another:
#   bandit             tier 1: the default run, the paper's 100-arm bandit, then the report (10 seeds; budget 5
#                      minutes on 2 idle cores); figures/<experiment>_<figure>.png
#   bandit_contextual  the contextual bandit, Tajwar et al.'s MLP policy (3 seeds; budget 10 minutes);
#                      figures/bandit_contextual/<experiment>_<figure>.png
#   synthetic_llm      tier 2 (2 seeds; budget 30 minutes); figures/synthetic_llm/<experiment>_<figure>.png
# Each report keeps its runs (report/ for tier 1, report_<task>/ for the others): re-running resumes where it
# stopped. Its verdicts.json becomes docs/verdicts/<task>.json, and docs/verdicts.md's tables are generated
# again from every docs/verdicts/*.json.
#   bash figures/make_figures.sh                                     # tier 1 only (the default)
#   bash figures/make_figures.sh bandit bandit_contextual synthetic_llm   # every tier's report, about 45 minutes
#   bash figures/make_figures.sh synthetic_llm -- --jobs 1           # after --, options for every report
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGNLAB=${ALIGNLAB:-.venv/bin/alignlab}
PLOT=${PLOT:-.venv/bin/alignlab-plot}
REPORT=${REPORT:-.venv/bin/alignlab-report}
tasks=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do tasks+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the "--"
[ ${#tasks[@]} -gt 0 ] || tasks=(bandit)
for task in "${tasks[@]}"; do
  case "$task" in
    bandit | bandit_contextual | synthetic_llm) ;;
    *) echo "make_figures.sh: error: no figures for task '$task'. Fix: give bandit, bandit_contextual or synthetic_llm." >&2
       exit 2 ;;
  esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for task in "${tasks[@]}"; do
  if [ "$task" = bandit ]; then
    # The default run: online DPO on R1.
    $ALIGNLAB hydra.run.dir="$out/default" train.progress=false
    cp "$out/default/figure.png" figures/default_run.png
    $PLOT --animate "$out/default" --out figures/animation_online_dpo_r1.gif > /dev/null
    # The same run on the paper's 100-arm bandit.
    $ALIGNLAB task=bandit_tajwar100 hydra.run.dir="$out/tajwar100" train.progress=false
    cp "$out/tajwar100/figure.png" figures/bandit_tajwar100_run.png
    report=report prefix=figures/
  else
    report=report_$task prefix=figures/$task/
    mkdir -p "$prefix"
  fi
  # Every finding on the task (resumable: $report/runs/ keeps the finished runs).
  $REPORT task="$task" --out "$report" "$@"
  for dir in "$report"/figures/*/; do
    experiment=$(basename "$dir")
    for f in reward_vs_iteration reward_vs_kl logps; do
      if [ -f "$dir/$f.png" ]; then cp "$dir/$f.png" "${prefix}${experiment}_$f.png"; fi
    done
    cp "$dir/final.csv" "${prefix}${experiment}_final.csv"
  done
  mkdir -p docs/verdicts
  cp "$report/verdicts.json" "docs/verdicts/$task.json"
done
$REPORT --verdicts docs/verdicts --into docs/verdicts.md
echo "figures written to figures/, verdicts to docs/verdicts/ and docs/verdicts.md"
