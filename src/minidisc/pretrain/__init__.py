"""Masked-LM pretraining of a student, from scratch or by task-agnostic distillation,
under an exact FLOPs or token budget (``minidisc pretrain``).

Bui et al., "Knowledge Distillation vs. Pretraining from Scratch under a Fixed
(Computation) Budget" (Insights from Negative Results 2024, arXiv 2404.19319).

Modules: :mod:`~minidisc.pretrain.config` (the validated run configuration),
:mod:`~minidisc.pretrain.student` (teacher loading, student building, layer copying),
:mod:`~minidisc.pretrain.data` (packed blocks, seeded order and masks),
:mod:`~minidisc.pretrain.budget` (analytic costs, the exact budget plan),
:mod:`~minidisc.pretrain.forward` (MLM head on masked positions only),
:mod:`~minidisc.pretrain.trainer` (scratch and distillation trainers),
:mod:`~minidisc.pretrain.evaluate` (held-out MLM loss, loss curve),
:mod:`~minidisc.pretrain.run` (the resumable run), :mod:`~minidisc.pretrain.report`,
:mod:`~minidisc.pretrain.study` (the comparison table of several arms).
"""

from __future__ import annotations
