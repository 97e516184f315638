"""Evaluating language models on their own terms (no task head): perplexity and bits per
byte of a causal LM on plain text (:mod:`minidisc.evaluation.perplexity`)."""
