#!/usr/bin/env bash
# Pretrains each task in runlocal mode on the shipped dataset and compares its L-BFGS
# linear-probe accuracy (pre_logits, test split of 1,000 held-out images) with the same
# encoder at random initialisation (--config.total_steps=0). Prints a table.
#
#   benchmarks/runlocal_evidence.sh [OUT_DIR] [config ...]
set -euo pipefail
out=${1:-/tmp/ssl_jax_evidence}
shift || true
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(rotation_resnet50 exemplar_resnet50 jigsaw_revnet relative_patch_resnet50)
mkdir -p "$out"
top1() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['lbfgs/pre_logits/top1'])" "$1/results.json"; }
rows=()
for c in "${configs[@]}"; do
  rm -rf "$out/$c" "$out/${c}_init"
  python -m ssl_jax.main --config="configs/$c.py:runlocal" --workdir="$out/${c}_init" \
    --config.total_steps=0 > "$out/${c}_init.log" 2>&1
  start=$(date +%s)
  python -m ssl_jax.main --config="configs/$c.py:runlocal" --workdir="$out/$c" > "$out/$c.log" 2>&1
  minutes=$(python -c "print(f'{($(date +%s) - $start) / 60:.1f}')")
  rows+=("| $c:runlocal | $(top1 "$out/${c}_init") | $(top1 "$out/$c") | $minutes |")
done
echo "| config | L-BFGS top-1, random init | L-BFGS top-1, pretrained | minutes (train + eval) |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
