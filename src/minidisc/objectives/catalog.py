"""Names and one-line descriptions of the objectives, importable without torch.

``minidisc <command> --help`` lists these; the objective classes take their
``description`` from here so the two never drift apart.
"""

from __future__ import annotations

OBJECTIVE_DESCRIPTIONS: dict[str, str] = {
    "kd": "vanilla KD (Hinton 2015): alpha*tau^2*KL(teacher||student) + (1-alpha)*label CE",
    "minidisc": "MiniDisc loss: (hidden MSE at layers 0, L/6, ..., L + soft CE on logits (MSE for regression))/2",
    "pkd": "Patient KD (Sun 2019): beta*squared distance of normalised [CLS] states, summed over intermediate layers + alpha*soft CE + (1-alpha)*CE",
    "hidden_mse": "MSE between mapped hidden states over real tokens (learnable projection when widths differ)",
    "cosine": "1 - cosine similarity between mapped hidden states over real tokens (default: last layer)",
    "tinybert": "TinyBERT (Jiao 2020): embedding + attention-score + hidden-state MSE (+ soft CE in task distillation)",
    "minilm": "MiniLM (Wang 2020): KL of last-layer attention distributions + value-relation KL",
    "minilmv2": "MiniLMv2 (Wang 2021): Q-Q/K-K/V-V self-attention relation KL with A_r relation heads",
    "distilbert": "DistilBERT (Sanh 2019): 5*KD(tau=2) + 2*MLM/label CE + 1*cosine of last hidden states",
    "forward_kl": "causal LM: tau^2*KL(teacher||student) of next-token distributions over next-token positions; label-free",
    "reverse_kl": "causal LM: tau^2*KL(student||teacher) of next-token distributions (mode-seeking, MiniLLM); label-free",
    "jsd": "causal LM: generalized JSD(beta) (GKD, Agarwal 2024): beta*KL(p||m) + (1-beta)*KL(q||m), m = beta*p + (1-beta)*q",
    "skew_kl": "causal LM: alpha-skew KL (DistiLLM, Ko 2024): KL(p || alpha*p + (1-alpha)*q), alpha 0.1",
    "skew_reverse_kl": "causal LM: alpha-skew reverse KL (DistiLLM, Ko 2024): KL(q || alpha*q + (1-alpha)*p), alpha 0.1",
}

OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVE_DESCRIPTIONS)

TASK_TYPES: tuple[str, ...] = (
    "classification",
    "regression",
    "token_classification",
    "masked_lm",
    "causal_lm",
)
