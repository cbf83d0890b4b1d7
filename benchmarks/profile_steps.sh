#!/usr/bin/env bash
# Profiles the jitted train step of each task at runlocal's tiny width (ResNet k=0.25) with
# `python -m ssl_jax.benchmark --profile`: the step's time, its parts (augmentation,
# BatchNorm, convolutions) and its top ops by time, one markdown section per task, in
# OUT_DIR/profile.md (traces in OUT_DIR/<task>/, for TensorBoard or Perfetto).
#
#   benchmarks/profile_steps.sh [OUT_DIR] [config[:arguments] ...]
#
# The contrastive configs run at 64 px with the blur on for both views (runlocal turns it
# off at 32 px, where its kernel is a single tap), so that the profile sees every op of
# the recipe. On an accelerator pass the full configs, e.g. `simclr_resnet50:k=1`, and
# PROFILE_FLAGS="--batch=256 --image_size=224" (the flags are added to every run).
set -euo pipefail
out=${1:-/tmp/ssl_jax_profile}
shift || true
configs=("$@")
# shellcheck disable=SC2054  # The commas separate config arguments.
[ ${#configs[@]} -gt 0 ] || configs=(rotation_resnet50:runlocal exemplar_resnet50:runlocal
  supervised_v1_resnet50:runlocal,augment=mocov2 simclr_resnet50:runlocal
  byol_resnet50:runlocal)
contrastive_flags=(--image_size=64 --batch=32 --config.augment.blur_prob='(0.5,0.5)')
mkdir -p "$out"
: > "$out/profile.md"
for spec in "${configs[@]}"; do
  name=${spec%%:*}
  extra=()
  case "$name" in
    simclr_*|byol_*|moco_*|simsiam_*|exemplar_v2_*|supervised_v1_*) extra=("${contrastive_flags[@]}");;
  esac
  [[ "$spec" == *runlocal* ]] || extra=()
  dir="$out/${spec//[:,=]/_}"
  rm -rf "$dir"
  echo "## $spec ${extra[*]} ${PROFILE_FLAGS:-}" | tee -a "$out/profile.md"
  # shellcheck disable=SC2086  # PROFILE_FLAGS holds several flags.
  python -m ssl_jax.benchmark --config="configs/$name.py:${spec#*:}" --steps=5 \
    --lbfgs_features=0 --profile="$dir" "${extra[@]}" ${PROFILE_FLAGS:-} 2>/dev/null \
    | grep '^|\|^Profile\|^Training' | tee -a "$out/profile.md"
done
echo "Written: $out/profile.md"
