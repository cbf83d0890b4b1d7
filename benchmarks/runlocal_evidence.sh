#!/usr/bin/env bash
# Pretrains each config in runlocal mode on the shipped dataset and compares its frozen
# representation with the same encoder at random initialisation (--config.total_steps=0):
# L-BFGS logistic regression, the paper's SGD linear probe (evals.linear) and, where the
# config evaluates it, weighted kNN, each on pre_logits (test split: 1,000 held-out
# images). Prints a table; the minutes are those of the pretraining run (training +
# evaluation).
#
#   benchmarks/runlocal_evidence.sh [OUT_DIR] [config[:arguments] ...]
#
# e.g. `simsiam_resnet50:multicrop` runs configs/simsiam_resnet50.py:runlocal,multicrop.
set -euo pipefail
out=${1:-/tmp/ssl_jax_evidence}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(rotation_resnet50 rotation_revnet50 exemplar_resnet50
  jigsaw_resnet50 jigsaw_revnet relative_patch_resnet50 supervised_resnet50
  supervised_v1_resnet50 simclr_resnet50 moco_v1_resnet50 moco_v2_resnet50
  exemplar_v2_resnet50 byol_resnet50 simsiam_resnet50 multitask_resnet50
  byol_resnet50:multicrop simsiam_resnet50:multicrop)
mkdir -p "$out"
score() {  # score WORKDIR PREFIX: the pre_logits top-1 in percent, or '-'.
  python -c "
import json, os, sys
path = sys.argv[1] + '/results.json'
if not os.path.exists(path):
  sys.exit(print('failed'))
r = json.load(open(path))
v = r.get(sys.argv[2] + '/pre_logits/top1')
print('-' if v is None else f'{100 * v:.1f}%')" "$1" "$2"
}
rows=()
for spec in "${configs[@]}"; do
  name=${spec%%:*}
  extra=${spec#"$name"}
  arg="runlocal${extra/:/,}"
  c=${spec/:/_}
  rm -rf "${out:?}/${c:?}" "${out:?}/${c:?}_init"
  python -m ssl_jax.main --config="configs/$name.py:$arg" --workdir="$out/${c}_init" \
    --config.total_steps=0 > "$out/${c}_init.log" 2>&1 || true  # A failure shows as 'failed'.
  start=$(date +%s)
  python -m ssl_jax.main --config="configs/$name.py:$arg" --workdir="$out/$c" > "$out/$c.log" 2>&1 \
    || true
  minutes=$(python -c "print(f'{($(date +%s) - $start) / 60:.1f}')")
  row="| $name:$arg"
  for evaluator in lbfgs linear knn; do
    row+=" | $(score "$out/${c}_init" $evaluator) | $(score "$out/$c" $evaluator)"
  done
  rows+=("$row | $minutes |")
  printf '%s\n' "${rows[-1]}" >> "$out/table.md"  # Rows as they finish.
done
echo "| config | L-BFGS init | L-BFGS trained | linear init | linear trained | kNN init | kNN trained | minutes |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
