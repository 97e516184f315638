"""Alignment of sub-network sizes to multiples that keep GPU matrix shapes efficient.

A GEMM on NVIDIA tensor cores runs at full rate only when its dimensions are multiples of
8 elements in fp16/bf16 (16 bytes), and tiles of 64 or 128 waste nothing when the
dimensions are multiples of those (NVIDIA, "Matrix Multiplication Background User's
Guide", Deep Learning Performance documentation, "Tensor Core Requirements"). A pruned
layer keeping 11 heads of 32 (352 columns) or 1,531 FFN units leaves partly empty tiles
in every matmul it runs. :func:`align_spec` rounds every kept size **down** to a
multiple ``m`` (``--align m``):

* FFN units per layer: to a multiple of ``m`` (a layer left with fewer keeps 0: its FFN
  is skipped);
* query heads per layer: to a multiple of ``group_size · m / gcd(m, head_dim)``, so that
  the Q and the K/V projections (``heads · head_dim`` and ``heads / group_size · head_dim``
  rows) are multiples of ``m``; whole KV groups stay whole;
* the hidden width (where cut): to a multiple of ``m`` (and of ``hidden_multiple``, e.g.
  the kept query heads a ``LlamaConfig`` needs), at least one such multiple.

A size at the model's full size is kept as it is (the teacher's own shapes are whatever
they are). Rounding down is monotone, so nested specs stay nested. A sub-network only
gets smaller, except a width below one multiple, which is raised to it (a model keeps
some width); where the width's multiple exceeds the full width it is left as it is.
The sparsity maps count the sparsity of the aligned shapes
(:func:`minidisc.compute.flops.non_embedding_params`, the one count). The sparsity maps apply it before they
measure sparsity (uniform shapes) or after ranking (global shapes); ``m = 1`` (the
default) changes nothing.
"""

from __future__ import annotations

import math

from minidisc.elastic.spec import SubnetSpec
from minidisc.errors import ConfigError


def check_align(multiple: int) -> int:
    """``multiple`` as an int ≥ 1.

    Raises:
        ConfigError: below 1.
    """
    if int(multiple) != multiple or multiple < 1:
        raise ConfigError(f"--align must be a whole number >= 1 (1: no alignment; 8 or 64 for GPUs), got {multiple}")
    return int(multiple)


def head_multiple(multiple: int, head_dim: int, group_size: int = 1) -> int:
    """Query heads a layer keeps a multiple of, so Q and K/V rows are multiples of ``multiple``."""
    return group_size * (multiple // math.gcd(multiple, head_dim))


def _down(size: int, full: int, multiple: int) -> int:
    return size if size >= full else size // multiple * multiple


def align_spec(
    spec: SubnetSpec,
    multiple: int,
    *,
    full_heads: int,
    full_neurons: int,
    full_hidden: int,
    head_dim: int,
    group_size: int = 1,
    hidden_multiple: int = 1,
) -> SubnetSpec:
    """``spec`` with every kept size rounded down to a multiple of ``multiple`` (module doc).

    Args:
        spec: the sub-network. multiple: ``m`` (1: ``spec`` unchanged).
        full_heads / full_neurons / full_hidden: the model's sizes (kept as they are).
        head_dim: width of one head. group_size: query heads per KV head.
        hidden_multiple: the width is also a multiple of this.

    Raises:
        ConfigError: ``multiple`` below 1.
    """
    multiple = check_align(multiple)
    if multiple == 1:
        return spec
    per_head = head_multiple(multiple, head_dim, group_size)
    heads = tuple(_down(h, full_heads, per_head) for h in spec.heads)
    neurons = tuple(_down(n, full_neurons, multiple) for n in spec.neurons)
    hidden = spec.hidden
    if hidden is not None and hidden < full_hidden:
        step = math.lcm(multiple, hidden_multiple)
        hidden = max(step, hidden // step * step) if step <= full_hidden else hidden
        hidden = None if hidden >= full_hidden else hidden
    return SubnetSpec(heads, neurons, spec.sparsity, hidden, spec.dropped)
