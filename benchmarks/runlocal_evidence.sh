#!/usr/bin/env bash
# Pretrains each config in runlocal mode on the shipped dataset and compares its frozen
# representation with the same encoder at random initialisation (--config.total_steps=0):
# L-BFGS logistic regression on pre_logits and, where the config evaluates it, weighted
# kNN (test split: 1,000 held-out images). Prints a table; the minutes are those of the
# pretraining run (training + evaluation).
#
#   benchmarks/runlocal_evidence.sh [OUT_DIR] [config[:arguments] ...]
#
# e.g. `simsiam_resnet50:multicrop` runs configs/simsiam_resnet50.py:runlocal,multicrop.
set -euo pipefail
out=${1:-/tmp/ssl_jax_evidence}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(rotation_resnet50 exemplar_resnet50 jigsaw_revnet
  relative_patch_resnet50 simclr_resnet50 moco_v1_resnet50 moco_v2_resnet50
  exemplar_v2_resnet50 byol_resnet50 simsiam_resnet50 simsiam_resnet50:multicrop
  byol_resnet50:multicrop)
mkdir -p "$out"
score() {  # score WORKDIR PREFIX: the pre_logits top-1 in percent, or '-'.
  python -c "
import json, sys
r = json.load(open(sys.argv[1] + '/results.json'))
v = r.get(sys.argv[2] + '/pre_logits/top1')
print('-' if v is None else f'{100 * v:.1f}%')" "$1" "$2"
}
rows=()
for spec in "${configs[@]}"; do
  name=${spec%%:*}
  extra=${spec#"$name"}
  arg="runlocal${extra/:/,}"
  c=${spec/:/_}
  rm -rf "$out/$c" "$out/${c}_init"
  python -m ssl_jax.main --config="configs/$name.py:$arg" --workdir="$out/${c}_init" \
    --config.total_steps=0 > "$out/${c}_init.log" 2>&1
  start=$(date +%s)
  python -m ssl_jax.main --config="configs/$name.py:$arg" --workdir="$out/$c" > "$out/$c.log" 2>&1
  minutes=$(python -c "print(f'{($(date +%s) - $start) / 60:.1f}')")
  rows+=("| $name:$arg | $(score "$out/${c}_init" lbfgs) | $(score "$out/$c" lbfgs) | $(score "$out/${c}_init" knn) | $(score "$out/$c" knn) | $minutes |")
done
echo "| config | L-BFGS random init | L-BFGS pretrained | kNN random init | kNN pretrained | minutes |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
