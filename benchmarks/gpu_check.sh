#!/usr/bin/env bash
# The GPU goals, in one prepared run on a CUDA machine (about 9 minutes on one GPU):
#   1. #4: chalklm/configs/shakespeare_char_gpu.toml (nanoGPT's baby GPT): validation loss
#      over the whole split and wall time. Goal: <= 1.45, in less time than nanoGPT's
#      1.4697 in ~3 minutes on an A100.
#   2. #6: chalklm/configs/multi30k_de_en.toml on the GPU for MT_BUDGET, then sacreBLEU on
#      test_2016_flickr (averaged/ checkpoint, beam 4). Goal: >= 40.
# Needs PyTorch with CUDA, numpy, safetensors, regex, tqdm, matplotlib and sacrebleu there;
# runs from the source tree (no install). The data does not travel by itself: copy it into
# the checkout first, where git ignores it, and carry that folder:
#   cp -r ../shared/data gpu_data && echo /gpu_data/ >> .git/info/exclude
#   (device) CHALKLM_DATA_DIR=gpu_data bash benchmarks/gpu_check.sh     [carry: gpu_data]
# Writes a summary (summary.txt) and the two runs' metrics and logs to $OUT (default
# gpu_out/); checkpoints stay in $RUNS (default /tmp/chalklm_gpu_runs).
# For a dry run on a CPU: DEVICE=cpu GPT_ARGS="--max-steps 20" MT_BUDGET=20s.
set -uo pipefail

OUT=${OUT:-gpu_out}
RUNS=${RUNS:-/tmp/chalklm_gpu_runs}
DEVICE=${DEVICE:-cuda}
MT_BUDGET=${MT_BUDGET:-4m}
GPT_ARGS=${GPT_ARGS:-}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
summary="$OUT/summary.txt"

say() { echo "$*" | tee -a "$summary"; }
chalklm() { "$PY" -m chalklm "$@"; }

say "== machine"
nvidia-smi -L 2>/dev/null | tee -a "$summary"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$summary"

say "== #4 shakespeare_char_gpu"
start=$SECONDS
# shellcheck disable=SC2086  # GPT_ARGS is a list of flags
chalklm train --config shakespeare_char_gpu --device "$DEVICE" --out "$RUNS/gpt" \
    $GPT_ARGS >"$OUT/gpt.log" 2>&1
say "exit $? after $((SECONDS - start)) s wall (compile and evaluations included)"
grep -a "validation loss" "$OUT/gpt.log" | tail -n 1 | tee -a "$summary"
cp "$RUNS/gpt/metrics.jsonl" "$OUT/gpt_metrics.jsonl" 2>/dev/null

say "== #6 multi30k_de_en, $MT_BUDGET"
start=$SECONDS
chalklm train --config multi30k_de_en --device "$DEVICE" --time-budget "$MT_BUDGET" \
    --out "$RUNS/mt" >"$OUT/mt.log" 2>&1
say "exit $? after $((SECONDS - start)) s wall"
grep -a "validation loss" "$OUT/mt.log" | tail -n 1 | tee -a "$summary"
cp "$RUNS/mt/metrics.jsonl" "$OUT/mt_metrics.jsonl" 2>/dev/null
for checkpoint in averaged best; do
    [ -d "$RUNS/mt/$checkpoint" ] || continue
    say "-- sacreBLEU, $checkpoint/, beam 4"
    chalklm evaluate --checkpoint "$RUNS/mt/$checkpoint" --src test_2016_flickr.de \
        --ref test_2016_flickr.en --device "$DEVICE" 2>"$OUT/bleu_$checkpoint.err" \
        | tee -a "$summary"
done
