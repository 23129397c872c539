#!/usr/bin/env bash
# The GPU check of issue 26 (docs/speed.md, "GPU check"), for a machine with NVIDIA GPUs, TensorFlow
# and PyTorch with CUDA, and the test requirements (pip install -e '.[test]'); about 8 minutes:
#   (a) the tests of device placement and strategies (tests/test_replicas.py),
#   (b) vc, dc40, src56 and sres50 training in fp32 and in mixed precision (bf16 where every GPU
#       has it, compute capability 8.0 or more; else fp16 with dynamic loss scaling), ours against
#       PyTorch (bench/train_throughput.py),
#   (c) one device against all of them with --strategy mirrored (bench/train_throughput.py),
#   (d) an AOFP and a C-SGD smoke run of the drivers on a synthetic set.
# It writes one JSON file with every figure and the device names, and prints the rows of the GPU
# table in docs/speed.md. --dry_run runs every step at its smallest size on this machine's CPU
# (the GPUs hidden), to check the commands; its JSON says "dry_run": true.
#
#   bash bench/gpu_check.sh --json gpu_check.json
#   bash bench/gpu_check.sh --dry_run --json gpu_check_dry.json

set -u -o pipefail

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  --json FILE      the JSON file to write (default gpu_check.json)
  --mixed KIND     the mixed precision: auto (default: bf16 on compute capability >= 8.0 on every
                   GPU, else fp16; fp16 in a dry run), bf16 or fp16
  --python PY      the Python with TensorFlow, PyTorch and pytest (default: $PYTHON, else python3)
  --dry_run        every step at its smallest size, on the CPU (well under a few minutes)
EOF
}

fail() { echo "error: $*" >&2; exit 2; }

JSON=gpu_check.json
MIXED=auto
DRY=0
PY=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --json) [ $# -ge 2 ] || fail "--json needs a file name"; JSON=$2; shift 2 ;;
        --json=*) JSON=${1#*=}; shift ;;
        --mixed) [ $# -ge 2 ] || fail "--mixed needs auto, bf16 or fp16"; MIXED=$2; shift 2 ;;
        --mixed=*) MIXED=${1#*=}; shift ;;
        --python) [ $# -ge 2 ] || fail "--python needs a program"; PY=$2; shift 2 ;;
        --python=*) PY=${1#*=}; shift ;;
        --dry_run) DRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) fail "unknown option $1 (see bash bench/gpu_check.sh --help)" ;;
    esac
done
case "$MIXED" in auto|bf16|fp16) ;; *) fail "--mixed must be auto, bf16 or fp16, got $MIXED" ;; esac
[ -n "$JSON" ] || fail "--json needs a file name"
case "$JSON" in /*) ;; *) JSON="$PWD/$JSON" ;; esac
[ -d "$(dirname "$JSON")" ] || fail "no folder $(dirname "$JSON") for --json $JSON"
command -v "$PY" >/dev/null 2>&1 || fail "no Python $PY (pass --python)"

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
"$PY" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("tensorflow", "torch", "pytest")))' 2>/dev/null ||
    fail "$PY lacks tensorflow, torch or pytest (pip install -e '.[test]' torch)"

# -- devices ---------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    export CUDA_VISIBLE_DEVICES=""          # the CPU only, as on a machine without GPUs
    NUM_DEVICES=2                           # --strategy mirrored on 2 logical CPU devices
    [ "$MIXED" = auto ] && MIXED=fp16       # the path of GPUs without bfloat16
else
    command -v nvidia-smi >/dev/null 2>&1 ||
        fail "no nvidia-smi: this check is for a machine with NVIDIA GPUs" \
             "(--dry_run checks the commands on a CPU)"
    nvidia-smi --query-gpu=index,name,compute_cap,memory.total --format=csv,noheader \
        > "$WORK/gpus.csv" 2>/dev/null || fail "nvidia-smi could not list the GPUs"
    NUM_DEVICES=$(grep -c . "$WORK/gpus.csv")
    [ "$NUM_DEVICES" -ge 1 ] || fail "nvidia-smi lists no GPU"
    if [ "$MIXED" = auto ]; then
        MIXED=bf16
        while IFS=, read -r _ _ capability _; do
            major=${capability%%.*}
            [ "${major// /}" -ge 8 ] 2>/dev/null || MIXED=fp16
        done < "$WORK/gpus.csv"
    fi
    echo "GPUs:"; sed 's/^/  /' "$WORK/gpus.csv"
    # both frameworks must see them: a CPU build of either would measure the CPU
    "$PY" - <<'PYEOF' || fail "TensorFlow or PyTorch sees no GPU (above): install their CUDA" \
                              "builds (pip install 'tensorflow[and-cuda]'; torch from pytorch.org)"
import sys
import tensorflow as tf
import torch
gpus = tf.config.list_physical_devices('GPU')
print('TensorFlow %s sees %d GPU(s), PyTorch %s %d'
      % (tf.__version__, len(gpus), torch.__version__, torch.cuda.device_count()))
sys.exit(0 if gpus and torch.cuda.is_available() else 1)
PYEOF
fi
echo "mixed precision: $MIXED; --strategy mirrored on $NUM_DEVICES devices; working folder $WORK"

# -- sizes -----------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    TESTS=(tests/test_replicas.py -k tf_config)       # the quick ones of that file
    SIZES=(--steps 1 --warmup 1 --batch_size 2 --image_size 32 --resnet_batch_size 2
           --resnet_steps 1 --resnet_warmup 1 --one_process --replicas_models vc)
    DATA=(--synthetic 64 --synthetic_test 32)
    AOFP_TRAIN=(--deps 4,4,8,8,8,8,8,8,8,8,8,8,8 --batch_size 16 --max_epochs 1)
    AOFP_PRUNE=(--batch_size 16 --itr_schedule 0.25 --batches_per_half 1 --finetune_epochs 0.5
                --search_max_epochs 2 --metric_limit 10)
    CSGD_TRAIN=(--model vc --deps 4,4,8,8,8,8,8,8,8,8,8,8,8 --batch_size 16 --max_epochs 1)
    CSGD_RUN=(--model vc --batch_size 16 --max_epochs 0.5)
else
    TESTS=(tests/test_replicas.py)
    SIZES=(--steps 20 --warmup 5 --batch_size 64 --image_size 224 --resnet_batch_size 32
           --resnet_steps 10 --resnet_warmup 3)
    DATA=(--synthetic 5000 --synthetic_test 1000)
    AOFP_TRAIN=(--max_epochs 2)
    AOFP_PRUNE=(--itr_schedule 0.3 --batches_per_half 10 --search_max_epochs 2
                --finetune_epochs 1)
    CSGD_TRAIN=(--max_epochs 2)
    CSGD_RUN=(--max_epochs 1)
fi

# -- steps: each one's exit status and seconds in steps.tsv, its output in <step>.log --------------
: > "$WORK/steps.tsv"
step() {  # step NAME DIR COMMAND...
    local name=$1 dir=$2; shift 2
    local start end status
    echo "== $name: $*"
    start=$(date +%s.%N)
    (cd "$dir" && "$@") > "$WORK/$name.log" 2>&1
    status=$?
    end=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(awk "BEGIN {print $end - $start}")" "$*" \
        >> "$WORK/steps.tsv"
    if [ "$status" != 0 ]; then
        echo "   $name failed (exit status $status); the end of its output:"
        tail -n 25 "$WORK/$name.log" | sed 's/^/   | /'
    else
        tail -n 3 "$WORK/$name.log" | sed 's/^/   | /'
    fi
}

# (a) device placement and strategies
step tests "$REPO" "$PY" -m pytest -q -p no:cacheprovider --junitxml="$WORK/tests.xml" "${TESTS[@]}"

# (b) and (c): one invocation, so the one-device runs of (c) are those of (b)
step throughput "$REPO" "$PY" bench/train_throughput.py \
    --sections "train,$MIXED,resnet50,replicas" --models vc,dc40,src56 --frameworks ours,torch \
    --rounds 1 --mixed_precision "$MIXED" --num_devices "$NUM_DEVICES" --per_device_batch \
    "${SIZES[@]}" --json "$WORK/throughput.json"

# (d) AOFP and C-SGD smoke runs on a synthetic set
mkdir -p "$WORK/aofp" "$WORK/csgd"
step data "$REPO" "$PY" datasets/download_and_convert_cifar10.py --dataset_dir "$WORK/data" \
    "${DATA[@]}" --overwrite
step aofp_train "$WORK/aofp" "$PY" "$REPO/aofp/aofp_standalone.py" train --preset smoke \
    --data_dir "$WORK/data" "${AOFP_TRAIN[@]}"
step aofp_prune "$WORK/aofp" "$PY" "$REPO/aofp/aofp_standalone.py" prune --preset smoke \
    --data_dir "$WORK/data" --nolatency "${AOFP_PRUNE[@]}"
step csgd_train "$WORK/csgd" "$PY" "$REPO/csgd/csgd_standalone.py" train --preset smoke \
    --data_dir "$WORK/data" "${CSGD_TRAIN[@]}"
step csgd1 "$WORK/csgd" "$PY" "$REPO/csgd/csgd_standalone.py" csgd1 --preset smoke \
    --data_dir "$WORK/data" --nolatency "${CSGD_RUN[@]}"

COMMAND="bash bench/gpu_check.sh --json $(basename "$JSON")"
[ "$DRY" = 1 ] && COMMAND="bash bench/gpu_check.sh --dry_run --json $(basename "$JSON")"
DRY_FLAG=()
[ "$DRY" = 1 ] && DRY_FLAG=(--dry_run)
"$PY" "$REPO/bench/gpu_check_report.py" --work "$WORK" --json "$JSON" --mixed "$MIXED" \
    --command "$COMMAND" ${DRY_FLAG[@]+"${DRY_FLAG[@]}"}
