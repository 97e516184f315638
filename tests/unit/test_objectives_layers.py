"""Layer maps and projections of minidisc.objectives."""

from __future__ import annotations

import pytest
from transformers import BertConfig

from minidisc.errors import ConfigError
from minidisc.objectives import build_objective
from minidisc.objectives.layers import (
    check_layer_pairs,
    minidisc_layer_indices,
    minidisc_layer_pairs,
    pkd_layer_map,
    uniform_layer_map,
)


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        # round(k*L/6), k = 0..6, halves up, de-duplicated:
        (1, (0, 1)),  # 0, .17, .33, .5, .67, .83, 1
        (2, (0, 1, 2)),  # 0, .33, .67, 1, 1.33, 1.67, 2
        (3, (0, 1, 2, 3)),  # 0, .5, 1, 1.5, 2, 2.5, 3
        (6, (0, 1, 2, 3, 4, 5, 6)),
        (12, (0, 2, 4, 6, 8, 10, 12)),
        (8, (0, 1, 3, 4, 5, 7, 8)),  # 0, 1.33, 2.67, 4, 5.33, 6.67, 8
    ],
)
def test_minidisc_layer_indices(layers: int, expected: tuple[int, ...]) -> None:
    assert minidisc_layer_indices(layers) == expected


@pytest.mark.parametrize("layers", [6, 12, 18, 24, 36])
def test_minidisc_indices_equal_reference_stride_when_six_divides(layers: int) -> None:
    assert minidisc_layer_indices(layers) == tuple(range(0, layers + 1, layers // 6))


def test_minidisc_layer_indices_rejects_zero_layers() -> None:
    with pytest.raises(ConfigError):
        minidisc_layer_indices(0)


def test_minidisc_pairs_equal_depth_and_layer_dropped_student() -> None:
    assert minidisc_layer_pairs(6, 6) == tuple((i, i) for i in range(7))
    # 3-layer student of a 12-layer teacher: student 0..3 -> teacher 0, 4, 8, 12
    assert minidisc_layer_pairs(3, 12) == ((0, 0), (1, 4), (2, 8), (3, 12))


def test_uniform_layer_map() -> None:
    assert uniform_layer_map(4, 12) == ((0, 0), (1, 3), (2, 6), (3, 9), (4, 12))
    assert uniform_layer_map(2, 4, include_embeddings=False) == ((1, 2), (2, 4))
    assert uniform_layer_map(3, 3) == ((0, 0), (1, 1), (2, 2), (3, 3))


def test_pkd_layer_maps_match_paper() -> None:
    # Sun et al. 2019: BERT12 -> BERT6, PKD-skip uses teacher layers {2,4,6,8,10},
    # PKD-last uses {7,8,9,10,11}.
    assert [t for _, t in pkd_layer_map(6, 12, "skip")] == [2, 4, 6, 8, 10]
    assert [t for _, t in pkd_layer_map(6, 12, "last")] == [7, 8, 9, 10, 11]
    assert [s for s, _ in pkd_layer_map(6, 12)] == [1, 2, 3, 4, 5]
    assert pkd_layer_map(1, 12) == ()
    with pytest.raises(ConfigError):
        pkd_layer_map(12, 6)


def test_check_layer_pairs_rejects_out_of_range() -> None:
    assert check_layer_pairs([[0, 0], [2, 4]], 2, 4) == ((0, 0), (2, 4))
    with pytest.raises(ConfigError, match="out of range"):
        check_layer_pairs([[3, 4]], 2, 4)


def _config(width: int, heads: int = 4, layers: int = 2) -> BertConfig:
    return BertConfig(
        hidden_size=width, num_attention_heads=heads, num_hidden_layers=layers, intermediate_size=32
    )


@pytest.mark.parametrize(
    "name", ["hidden_mse", "cosine", "minidisc", "pkd", "tinybert", "distilbert"]
)
def test_projection_created_only_when_widths_differ(name: str) -> None:
    differ = build_objective(name, student_config=_config(16), teacher_config=_config(32))
    weights = [p for p in differ.parameters()]
    assert weights and all(p.shape == (32, 16) for p in weights)
    same = build_objective(name, student_config=_config(32), teacher_config=_config(32))
    assert list(same.parameters()) == []
    assert list(build_objective(name).parameters()) == []


def test_tinybert_has_separate_embedding_and_hidden_projections() -> None:
    objective = build_objective("tinybert", student_config=_config(16), teacher_config=_config(32))
    assert objective.embedding_projection is not objective.hidden_projection
    assert len(list(objective.parameters())) == 2
