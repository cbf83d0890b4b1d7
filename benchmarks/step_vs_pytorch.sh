#!/usr/bin/env bash
# ssl_jax's train step beside the PyTorch peer (torchvision ResNet-50, bf16 autocast,
# channels_last, torch.compile: ../shared/peer/torch_step_bench.py) on the same GPU, the
# same batch of images, 224 px: Rotation (4 inputs per image), SimCLR (2) and supervised
# (1), all on ResNet-50 v1 (the peer's torchvision model). Prints both tools' lines; the
# README's table is made from them. The peer runs without PYTHONPATH: it needs none of ours.
# With PROFILE_DIR, each ssl_jax step is also traced (3 steps, jax.profiler, into
# PROFILE_DIR/<task>) and its time per part and top ops on the GPU are printed.
#
#   benchmarks/step_vs_pytorch.sh PEER_SCRIPT [STEPS] [PROFILE_DIR]
#
# TASKS="rotation simclr supervised" (the default) picks the pairs, to split the run over
# calls of a time limit.
#
# ssl_jax's step needs JAX, flax, optax, orbax-checkpoint and ml_collections, not
# TensorFlow, TFDS or clu (tests/test_benchmark.py): it runs on a GPU host that has JAX
# (with flax, optax, orbax-checkpoint) and PyTorch, once ml_collections is installed.
set -euo pipefail
peer=$1
steps=${2:-30}
profile_dir=${3:-}
tasks=" ${TASKS:-rotation simclr supervised} "
# task  ssl_jax config                       images per step
runs=("rotation configs/rotation_resnet50.py:variant=v1 128"
      "simclr configs/simclr_resnet50.py 256"
      "supervised configs/supervised_v1_resnet50.py 256")
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
python3 -c 'import jax; print("jax", jax.__version__, jax.devices())'
for run in "${runs[@]}"; do
  read -r task config batch <<< "$run"
  [[ "$tasks" == *" $task "* ]] || continue
  profile=()
  [ -z "$profile_dir" ] || profile=(--profile="$profile_dir/$task")
  python3 -m ssl_jax.benchmark --config="$config" --batch="$batch" --image_size=224 \
    --steps="$steps" --lbfgs_features=0 "${profile[@]}"
  env -u PYTHONPATH python3 "$peer" --task "$task" --batch "$batch" --res 224 \
    --steps "$steps" --compile 1
done
