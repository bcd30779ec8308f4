#!/bin/bash
# TAPIR training with torchrun (one process per GPU; any cluster or a single multi-GPU box).
#
#   single node, all GPUs:   configs/train/torchrun.sh
#   node 0 of 2:             NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 configs/train/torchrun.sh
#   node 1 of 2:             NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 configs/train/torchrun.sh
#   resume after a crash:    configs/train/torchrun.sh --ckpt_path last
#
# Extra arguments are passed to `tapforge train fit`; Lightning takes the ranks from torchrun.
set -euo pipefail
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
GPUS_PER_NODE="${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
export OMP_NUM_THREADS=1

exec torchrun \
    --nnodes "${NNODES}" --node_rank "${NODE_RANK}" --nproc_per_node "${GPUS_PER_NODE}" \
    --master_addr "${MASTER_ADDR}" --master_port "${MASTER_PORT}" \
    -m tapforge.cli train fit \
    --config configs/train/tapir.yaml \
    --trainer.num_nodes "${NNODES}" \
    --trainer.devices "${GPUS_PER_NODE}" \
    --trainer.strategy ddp \
    "$@"
