"""Language modelling as a compression task (``minidisc compress --task lm``).

A decoder LLM is compressed on plain text: its "task" is next-token prediction, with no
labels beyond the text itself and no head to fine-tune. :data:`LM_TASK` stands where a
GLUE :class:`~minidisc.tasks.registry.TaskSpec` stands in the shared training machinery
(collation, metrics, model loading dispatch on ``task_type == "causal_lm"``).

The selection metric of the λ-tradeoff (Zhang et al., EACL 2024, eq. 3) needs a number
on the scale of an accuracy, where the teacher is about 1. For a candidate ``c`` with
mean next-token loss ``L_c`` (nats per token) on the selection slice, and the
teacher's loss ``L_T`` on the same slice::

    m(c) = exp(L_T − L_c) = PPL_T / PPL_c

``m`` is in (0, 1] whenever the candidate is no better than the teacher (``L_c ≥ L_T``):
1 at the teacher's quality, 1/2 at twice its perplexity, → 0 as the candidate's
perplexity grows. It is **not clipped** at 1: a candidate that beats the teacher on the
slice (possible after distillation on in-domain text) scores above 1, so the running
best of every candidate keeps improving and the tracker keeps its best snapshot; see
``docs/lm.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The ``task_type`` of next-token prediction (the objectives' name for it).
CAUSAL_LM = "causal_lm"


@dataclass(frozen=True)
class LMTask:
    """The causal-LM "task": what the trainers read of a task spec.

    Attributes:
        name: ``"lm"``.
        task_type: :data:`CAUSAL_LM`.
        reference_loss: the teacher's mean next-token loss on the selection slice
            (nats per token), the ``L_T`` of :func:`selection_metric`; None until the
            teacher has been evaluated (then ``main`` is the exponentiated negative
            loss of the candidate alone, ``1 / PPL_c``).
        main_metric: key of ``m`` in the metrics (``"main"``).
    """

    name: str = "lm"
    task_type: str = CAUSAL_LM
    reference_loss: float | None = None
    main_metric: str = "main"
    is_regression: bool = False
    label_names: tuple[str, ...] | None = None
    num_labels: int = 0


#: The language-modelling task before the teacher's loss is known.
LM_TASK = LMTask()


def selection_metric(loss: float, reference_loss: float | None) -> float:
    """``m = exp(L_T − L_c)`` (module doc): ``loss`` is ``L_c``, ``reference_loss`` ``L_T``
    (None counts as 0, i.e. ``m = 1 / PPL_c``). Not clipped at 1.

    Raises:
        ValueError: a loss that is not finite.
    """
    if not math.isfinite(loss):
        raise ValueError(f"the candidate's next-token loss is {loss}; training diverged")
    return math.exp((reference_loss or 0.0) - loss)


def lm_metrics(nll: float, tokens: int, correct: int, reference_loss: float | None) -> dict[str, float]:
    """Selection metrics of one model on the selection slice.

    Args:
        nll: summed next-token negative log-likelihood in nats.
        tokens: targets scored.
        correct: targets whose argmax prediction was right.
        reference_loss: the teacher's mean loss ``L_T`` (see :func:`selection_metric`).

    Returns:
        ``main`` (``m``), ``nll`` (mean next-token loss ``L_c``, nats/token; not named
        ``loss``, which the Trainer's own evaluation loss would overwrite), ``perplexity``
        and ``accuracy`` (next-token top-1 accuracy, a fraction).

    Raises:
        ValueError: no targets.
    """
    if tokens <= 0:
        raise ValueError("the selection slice has no next-token targets")
    loss = nll / tokens
    return {
        "main": selection_metric(loss, reference_loss),
        "nll": loss,
        "perplexity": math.exp(loss),
        "accuracy": correct / tokens,
    }
