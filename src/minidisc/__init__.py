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

#: The Python API (minidisc.api): one function per command, same options; docs/python-api.md.
_API = ("finetune", "compress", "sparsify", "distill", "takd", "maxidisc", "compare", "RunResult", "read_result")

__all__ = ["RunResult", "__version__", "compare", "compress", "distill", "finetune", "load_student", "maxidisc",
           "read_result", "sparsify", "takd"]


def __getattr__(name: str):  # lazy: keep `import minidisc` (and the CLI's --help) fast
    if name == "load_student":
        from minidisc.elastic.io import load_student

        return load_student
    if name in _API:
        import minidisc.api

        return getattr(minidisc.api, name)
    raise AttributeError(name)
