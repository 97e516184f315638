#!/usr/bin/env bash
# The GPU measurements still owed (issues 11 and 15), as one job for an offline GPU machine.
#
# Prepare here, in the project's virtual environment (see docs/gpu.md):
#   ../shared/tools/device-prep --teacher smollm2 --data glue,wikitext-2-raw,ptb,gutenberg
# Copy each teacher part to $HOME/t on the machine (one upload each), then run, from the
# checkout there, the install line device-prep printed followed by:
#   bash benchmarks/device_job.sh gpu lm
# Steps (any order, each optional):
#   gpu   benchmarks/gpu.py: step times, a 1-epoch compress, student speed-ups and
#         issue 15's bars                                   -> $OUT/gpu.json
#   lm    minidisc compress --task lm: SmolLM2 -> 50 %, trained on Gutenberg, held-out
#         perplexity on WikiText-2 and PTB test (issue 11's 2x bar), one run per seed
#                                                           -> $OUT/lm-<seed>.json, .md
# Every step's log goes to $OUT/job.log; a step that fails is reported and the next runs.
# Settings (environment): OUT (default ./out), DATA (.device-data), PARTS ($HOME/t),
#   TEACHER (default: rejoined from PARTS), LM_SEEDS (776), LM_SANDWICH_TOKENS (2000000),
#   LM_FINAL_TOKENS (8000000), LM_BATCH (32), LM_EVAL_TOKENS (32768), STEP_TIMEOUT (280 s).
#   TINY=1: tiny settings, to test this script on a CPU first (minutes; timeout 1800 s).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
DATA=${DATA:-$PWD/.device-data}
PARTS=${PARTS:-$HOME/t}
STEP_TIMEOUT=${STEP_TIMEOUT:-$([ -n "${TINY:-}" ] && echo 1800 || echo 280)}  # TINY: a CPU is slow at SmolLM2
mkdir -p "$OUT"
log="$OUT/job.log"
say() { echo "[$(date +%T)] $*" | tee -a "$log" >&2; }

teacher() {  # the SmolLM2 GGUF: $TEACHER, or rejoined from the device-prep parts in $PARTS
    if [ -n "${TEACHER:-}" ]; then echo "$TEACHER"; return; fi
    local gguf="$PARTS/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [ ! -f "$gguf" ]; then
        [ "$(cat "$PARTS"/smollm2-part-* | sha256sum | cut -c1-64)" = "$(cat "$PARTS"/smollm2.sha256)" ] \
            || { say "teacher parts in $PARTS do not match smollm2.sha256"; return 1; }
        cat "$PARTS"/smollm2-part-* | tar -x -C "$PARTS"
    fi
    echo "$gguf"
}

step_gpu() {
    local args=(--data-dir "$DATA/glue")
    [ -n "${TINY:-}" ] && args+=(--tiny)
    timeout "$STEP_TIMEOUT" python3 benchmarks/gpu.py "${args[@]}" >"$OUT/gpu.json" 2>>"$log"
}

step_lm() {
    local t seed sandwich=${LM_SANDWICH_TOKENS:-2000000} final=${LM_FINAL_TOKENS:-8000000}
    local extra=(--batch-size "${LM_BATCH:-32}" --eval-max-tokens "${LM_EVAL_TOKENS:-32768}")
    if [ -n "${TINY:-}" ]; then
        sandwich=256 final=256
        extra=(--batch-size 2 --eval-max-tokens 256 --block-size 32 --selection-blocks 2 --calibration-blocks 2)
    fi
    t=$(teacher) || return 1
    for seed in ${LM_SEEDS:-776}; do
        timeout "$STEP_TIMEOUT" python3 -m minidisc.cli compress --teacher "$t" --task lm \
            --corpus "$DATA/gutenberg" --eval-corpus "$DATA/wikitext-2-raw/wiki.test.raw" \
            --eval-corpus "$DATA/ptb/ptb.test.txt" --target-sparsity 0.5 \
            --sandwich-budget-tokens "$sandwich" --final-budget-tokens "$final" "${extra[@]}" \
            --seed "$seed" -o "$OUT/.lm-$seed" --overwrite >>"$log" 2>&1 || return 1
        cp "$OUT/.lm-$seed/report.json" "$OUT/lm-$seed.json" && cp "$OUT/.lm-$seed/report.md" "$OUT/lm-$seed.md"
        rm -rf "$OUT/.lm-$seed"  # only the reports come back (8 files at most)
    done
}

[ $# -gt 0 ] || { echo "usage: bash benchmarks/device_job.sh gpu|lm ..." >&2; exit 2; }
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))" 2>&1 | tee -a "$log" >&2
status=0
for step in "$@"; do
    declare -F "step_$step" >/dev/null || { say "unknown step $step (gpu, lm)"; exit 2; }
    say "start $step"; start=$SECONDS
    if "step_$step"; then say "done $step in $((SECONDS - start)) s"; else say "FAILED $step after $((SECONDS - start)) s"; status=1; fi
done
exit $status
