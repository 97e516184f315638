#!/usr/bin/env bash
# Task-agnostic distillation vs. pretraining from scratch under a fixed compute budget
# (Bui et al. 2024, arXiv 2404.19319) at CPU scale. Results: docs/results.md.
#
#   bash benchmarks/kd_budget_study.sh            # from the repository root
#
# Teacher: the packaged all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads) with a warmed-up
# MLM head; students: 3 layers at the teacher's width; corpus: WikiText-2 raw (valid for
# training, test held out); GLUE dev on SST-2, MRPC, CoLA from subsampled training sets.
# Every step is a resumable minidisc run: rerunning skips finished steps. CPU time of
# every command is appended to $OUT/cpu/<step>.txt ("wall user sys" seconds per invocation).
set -euo pipefail

DATA=$(cd "${DATA:-../shared/data}" && pwd)
OUT=${OUT:-runs/kd_budget_study}
FLOPS=${FLOPS:-5e12}        # training FLOPs per arm (student 3x fwd + teacher 1x fwd)
SEED=${SEED:-776}
mkdir -p "$OUT/cpu"
cd "$OUT"

step() {  # step NAME COMMAND...: run niced, append wall/user/sys seconds
    local name=$1; shift
    echo "== $name"
    /usr/bin/time -a -o "cpu/$name.txt" -f "%e %U %S" nice -n 10 "$@"
}

WIKI="$DATA/wikitext-2-raw"
CORPUS=(--corpus "$WIKI/wiki.valid.raw" --eval-corpus "$WIKI/wiki.test.raw" --eval-blocks 32)

# 1. Give the headless teacher an MLM head: copy all 6 layers, freeze the encoder, set
#    the output bias to the corpus' log unigram frequencies, train the head for 32 steps
#    of 32 x 128 tokens (131,072 tokens).
step teacher_head minidisc pretrain -o teacher_head --strategy scratch \
    --init-from-teacher all --freeze-encoder --head-bias-from-corpus "${CORPUS[@]}" \
    --budget-tokens 131072 --batch-size 32 --learning-rate 3e-3 --warmup-ratio 0.1 \
    --eval-every-tokens 32768 --seed "$SEED"
TEACHER=teacher_head/student

ARM_OPTS=(--teacher "$TEACHER" "${CORPUS[@]}" --batch-size 16 --learning-rate 1e-3
          --warmup-ratio 0.1 --seed "$SEED")

# 2. Equal compute: every arm gets the same FLOPs budget.
for arm in scratch kd tinybert minilm minilmv2; do
    log=()
    case $arm in scratch|kd) log=(--log-runs runs.jsonl) ;; esac
    step "flops_$arm" minidisc pretrain -o "flops/$arm" --strategy "$arm" --budget-flops "$FLOPS" \
        "${ARM_OPTS[@]}" "${log[@]}"
done

# 3. Equal data: scratch sees exactly the tokens vanilla KD saw under the FLOPs budget.
KD_TOKENS=$(python -c "import json; print(json.load(open('flops/kd/report.json'))['compute']['tokens'])")
step data_scratch minidisc pretrain -o data/scratch --strategy scratch --budget-tokens "$KD_TOKENS" \
    "${ARM_OPTS[@]}"

# 4. GLUE dev (SST-2, MRPC, CoLA): 1,000 training examples, 1 epoch, dev capped at 500.
GLUE_OPTS=(--glue-suite sst2,mrpc,cola --data-dir "$DATA/glue" --max-train-samples 1000
           --max-eval-samples 500 --epochs 1 --max-length 64 --batch-size 16
           --learning-rate 1e-4 --seed "$SEED" --no-save-model)
for run in flops/scratch flops/kd flops/tinybert flops/minilm flops/minilmv2 data/scratch; do
    name=${run//\//_}
    step "glue_$name" minidisc finetune --model "$run/student" -o "glue/$name" "${GLUE_OPTS[@]}"
done
# Reference: the packaged teacher itself (6 layers, trained pooler) under the same protocol.
step glue_teacher minidisc finetune -o glue/teacher "${GLUE_OPTS[@]}"

# 5. The table.
python -m minidisc.pretrain.study \
    "equal FLOPs=flops/scratch,glue/flops_scratch" \
    "equal FLOPs=flops/kd,glue/flops_kd" \
    "equal FLOPs=flops/tinybert,glue/flops_tinybert" \
    "equal FLOPs=flops/minilm,glue/flops_minilm" \
    "equal FLOPs=flops/minilmv2,glue/flops_minilmv2" \
    "equal data (D = D_KD)=data/scratch,glue/data_scratch" \
    --markdown study.md --json study.json --plot study_loss.png
cat study.md glue/teacher/glue_suite.md
awk '{w += $1; c += $2 + $3} END {printf "study total: wall %.0f s, CPU (user+sys) %.0f s\n", w, c}' cpu/*.txt
