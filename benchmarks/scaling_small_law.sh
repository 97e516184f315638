#!/usr/bin/env bash
# A small-scale distillation scaling law fitted on this machine (Busbridge et al. 2025,
# docs/scaling.md "Worked example: your own runs"). Results: docs/scaling.md.
#
#   bash benchmarks/scaling_small_law.sh          # from the repository root
#
# 1. 9 supervised runs: tiny BERT masked-LM students of 3 sizes (2/3/4 layers, width
#    32 x layers, i.e. d_model/n_layers = 32 throughout, FFN 4 x width) x 3 token budgets,
#    `minidisc pretrain --strategy scratch`.
# 2. 12 distillation runs: students of 2 sizes x 2 budgets, each distilled (`--strategy kd`,
#    pure KD: alpha = 1, tau = 1) from 3 teachers of different quality: the scratch
#    students of step 1 with 2, 3 and 4 layers trained on the largest budget.
# 3. `minidisc scaling fit` on the runs file, with the F(N) constants (Eq. 69) that match
#    how `minidisc pretrain` counts FLOPs, derived from the runs' own reports.
# 4. `minidisc scaling predict / plan / crossover` with the fitted parameters.
#
# Corpus: WikiText-2 raw, wiki.valid.raw for training (242,432 tokens; the largest budget
# is 0.54 epochs, so no run sees a token twice), 64 blocks of wiki.test.raw held out
# (1,195 masked tokens, the same for every run and teacher). Every student starts with
# its MLM output bias at the corpus' log unigram frequencies, so losses start at the
# unigram level (~7.2 nats) and what the laws see is learning beyond it. Every run is
# resumable; finished runs are skipped without starting minidisc (delete a run's folder
# to redo it).
# CPU time of every command goes to $OUT/cpu/<step>.txt ("wall user sys" seconds).
# About 10 CPU-minutes on 2 shared cores (one thread per run). Batches of 4 blocks: these
# budgets are 64-256 optimiser steps; batch 16 learnt next to nothing in 16-64 steps.
set -euo pipefail

DATA=$(cd "${DATA:-../shared/data}" && pwd)
OUT=${OUT:-runs/scaling_small_law}
SEED=${SEED:-776}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT/cpu"
cd "$OUT"

finished() {  # finished DIR: the run in DIR completed (and was logged)
    grep -q '"finished": true' "$1/manifest.json" 2>/dev/null
}

step() {  # step NAME COMMAND...: run niced, append wall/user/sys seconds
    local name=$1; shift
    echo "== $name"
    /usr/bin/time -a -o "cpu/$name.txt" -f "%e %U %S" nice -n 5 "$@"
}

shape() {  # shape LAYERS: student options, width 32 per layer, head size 32, FFN 4x
    local l=$1 h=$(( 32 * $1 ))
    echo --student-layers "$l" --student-hidden "$h" --student-heads "$l" --student-ffn $(( 4 * h ))
}

WIKI="$DATA/wikitext-2-raw"
COMMON=(--corpus "$WIKI/wiki.valid.raw" --eval-corpus "$WIKI/wiki.test.raw" --eval-blocks 64
        --block-size 128 --batch-size 4 --learning-rate 2e-3 --warmup-ratio 0.1
        --head-bias-from-corpus --eval-every-tokens 1000000 --seed "$SEED"
        --log-runs runs.jsonl)

# 1. Supervised runs (also the teachers of step 2).
for layers in 2 3 4; do
    for tokens in 32768 65536 131072; do
        finished "sup/L${layers}_D${tokens}" && continue
        # shellcheck disable=SC2046
        step "sup_L${layers}_D${tokens}" minidisc pretrain -o "sup/L${layers}_D${tokens}" \
            --strategy scratch $(shape "$layers") --budget-tokens "$tokens" "${COMMON[@]}"
    done
done

# 2. Distillation runs: 3 teachers x 2 student sizes x 2 budgets.
for teacher in 2 3 4; do
    for layers in 2 3; do
        for tokens in 32768 65536; do
            finished "kd/T${teacher}/L${layers}_D${tokens}" && continue
            # shellcheck disable=SC2046
            step "kd_T${teacher}_L${layers}_D${tokens}" minidisc pretrain \
                -o "kd/T${teacher}/L${layers}_D${tokens}" --strategy kd \
                --objective-option alpha=1.0 --objective-option temperature=1.0 \
                --teacher "sup/L${teacher}_D131072/student" $(shape "$layers") \
                --budget-tokens "$tokens" "${COMMON[@]}"
        done
    done
done

# 3. The F(N) constants of Eq. 69 for these models, from the supervised runs' reports:
#    rho = d_model/n_layers = 32; omega = N/(n_layers d_model^2); attention scores and
#    context over the full 128-token block cost 4*128*n_layers*d_model FLOPs per token,
#    i.e. Eq. 69's 2*n_ctx*n_layers*d_model with n_ctx = 256; the MLM head
#    (2d^2 + 2dV per masked position) runs on ~15 % of the tokens, i.e. Eq. 69's
#    2*n_vocab*d_model with an effective n_vocab = (masked fraction) * (V + d).
python - <<'EOF' > flops_model.txt
import glob, json
runs = [json.load(open(p)) for p in sorted(glob.glob("sup/*/report.json"))]
omega, vocab = [], []
for r in runs:
    s, c = r["student"], r["compute"]
    n, layers, d = s["non_embedding_params"], s["layers"], s["hidden"]
    forward = c["student_flops"] / c["tokens"] / 3.0
    omega.append(n / (layers * d * d))
    vocab.append((forward - 2 * n - 4 * 128 * layers * d) / (2 * d))
print(f"--rho 32 --omega {sum(omega) / len(omega):.4g} --n-ctx 256 "
      f"--n-vocab {round(sum(vocab) / len(vocab))}")
EOF
read -r -a FLOPS_MODEL < flops_model.txt
echo "F(N) constants: ${FLOPS_MODEL[*]}"

# How well Eq. 69 with these constants reproduces the FLOPs/token `pretrain` counted.
python - "${FLOPS_MODEL[@]}" <<'EOF'
import glob, json, sys
from minidisc.scaling.compute import FlopsModel, forward_flops_per_token
a = dict(zip(sys.argv[1::2], sys.argv[2::2]))
model = FlopsModel(rho=float(a["--rho"]), omega=float(a["--omega"]),
                   n_ctx=int(a["--n-ctx"]), n_vocab=int(a["--n-vocab"]))
for path in sorted(glob.glob("sup/*/report.json")):
    r = json.load(open(path))
    n, c = r["student"]["non_embedding_params"], r["compute"]
    counted = c["student_flops"] / c["tokens"] / 3.0
    eq69 = forward_flops_per_token(n, model)
    print(f"{path}: N={n} counted F={counted:.4g}, Eq. 69 {eq69:.4g} "
          f"({100 * (eq69 / counted - 1):+.2f} %), paper's constants "
          f"{forward_flops_per_token(n):.4g}")
EOF

# 4. Fit, then use the fit (its FLOPs model is stored in fit.json). These models and
#    budgets are below the paper's planner bounds (1e6 parameters / tokens): --bounds
#    lowers them; the crossover scan covers about the budgets of the runs (2e4-2e6 tokens
#    for the 3-layer student).
step fit minidisc scaling fit --runs runs.jsonl --out fit.json --bootstrap 200 --jobs 1 \
    --plot fit.png "${FLOPS_MODEL[@]}"
N3=$(python -c "import json; print(json.load(open('sup/L3_D65536/report.json'))['student']['non_embedding_params'])")
teacher_spec() {  # NAME=PARAMS:LOSS of a teacher run
    python -c "import json,sys; r=json.load(open('sup/L$1_D131072/report.json')); \
print(f\"T$1={r['student']['non_embedding_params']}:{r['heldout']['final_loss']:.6f}\")"
}
TEACHERS=(--teacher "$(teacher_spec 2)" --teacher "$(teacher_spec 3)" --teacher "$(teacher_spec 4)")
step predict minidisc scaling predict --params fit.json --student-params "$N3" \
    --student-tokens 65536 --teacher-loss "$(teacher_spec 4 | sed 's/.*://')"
step plan_teachers minidisc scaling plan --params fit.json --student-params "$N3" \
    --compute 5e11 "${TEACHERS[@]}"
step plan minidisc scaling plan --params fit.json --student-params "$N3" --compute 5e11 \
    --scenario best-case --scenario teacher-inference --bounds 1e3 1e17
step crossover minidisc scaling crossover --params fit.json --student-params "$N3" \
    --scenario best-case --scenario teacher-inference --bounds 1e3 1e17 \
    --min-compute 1e11 --max-compute 1e13 --plot crossover.png

awk '{w += $1; c += $2 + $3} END {printf "total: wall %.0f s, CPU (user+sys) %.0f s\n", w, c}' cpu/*.txt
