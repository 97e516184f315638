"""minidisc: compress language models by knowledge distillation, under a known cost.

* MiniDisc teacher-assistant schedules over elastic weight-sharing sub-networks
  (Zhang et al., "MiniDisc: Minimal Distillation Schedule for Language Model
  Compression", EACL 2024 Findings).
* Distillation objectives (vanilla KD, TinyBERT, MiniLM/MiniLMv2, PKD) and
  task-agnostic distillation under a fixed compute budget.
* Distillation scaling laws (Busbridge et al., ICML 2025): predict, fit, plan.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_student"]


def __getattr__(name: str):  # lazy: keep `import minidisc` (and the CLI's --help) fast
    if name == "load_student":
        from minidisc.elastic.io import load_student

        return load_student
    raise AttributeError(name)
