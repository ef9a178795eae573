#!/usr/bin/env bash
# The CUDA path end to end on a GPU machine: train `net` and evaluate it, the speed benchmark (book recipe vs ours,
# every net's images/s), then the whole zoo. Each step runs even when an earlier one fails; logs go to OUT.
#
#     bash benchmarks/cuda_run.sh DATA OUT [PYTHON]
#
# DATA: the CIFAR-2 image folder (ROOT/{airplane,bird}); OUT: a folder for logs and results; PYTHON: default python3,
# which needs requirements.txt's training packages: a GPU image's own python3 may carry an older huggingface_hub
# without httpx2 (install ours with pip --target into a folder on PYTHONPATH). Nothing runs unless convhub imports.
set -u
data=$1 out=$2 python=${3:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1

step() {  # step NAME COMMAND...: run it, log it, note its exit status and seconds
    local name=$1; shift
    local started=$SECONDS
    echo "== $name: $*"
    "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc in $((SECONDS - started)) s"
    tail -n 25 "$out/$name.log"
    return $rc
}

step gpu nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step torch "$python" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), \
torch.cuda.is_bf16_supported())"
step imports "$python" -c "import convhub, training.cli, huggingface_hub; print('huggingface_hub', \
huggingface_hub.__version__)" || exit 1
work=$(mktemp -d)
step train_net "$python" -m training train --model net --data "$data" --device cuda --out "$work/net" --quiet
step evaluate_net "$python" -m training evaluate --model "$work/net" --data "$data" --json
step train_speed "$python" benchmarks/train_speed.py --data "$data" --device cuda --quiet --json "$out/train_speed.json"
step zoo "$python" -m training zoo --data "$data" --device cuda --out "$work/zoo" --quiet
cp "$work/zoo/results.md" "$work/zoo/results.json" "$work/net/README.md" "$out/" 2>/dev/null
ls "$out"
