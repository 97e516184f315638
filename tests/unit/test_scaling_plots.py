"""Figures are written as small PNGs and reflect the data they are given."""

from __future__ import annotations

import numpy as np
import pytest

from minidisc.errors import ConfigError
from minidisc.scaling.params import ScalingLawParams
from minidisc.scaling.plots import (
    distillation_advantage_grid,
    plot_fit,
    plot_student_vs_teacher,
)
from minidisc.scaling.synthetic import synthetic_records

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_fit_and_student_vs_teacher(tmp_path):
    records = synthetic_records(noise=0.002, student_sizes=(1e8, 1e9),
                                teacher_sizes=(2e9,), teacher_tokens_per_param=(20,))
    path = plot_fit(tmp_path / "fit.png", records, ScalingLawParams())
    assert path.read_bytes()[:8] == PNG and path.stat().st_size < 200_000
    path = plot_student_vs_teacher(tmp_path / "t.png", highlight=(1e9, 2e10, 2.0))
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(ConfigError):
        plot_fit(tmp_path / "fit.svg", records, ScalingLawParams())


def test_advantage_grid_signs():
    # Best case, 1e9 student: distillation wins at 1e20 FLOPs, loses at 1e24 (crossover
    # ≈ 2e22); an infeasible (too small) budget is NaN.
    grid = distillation_advantage_grid([1e9], [1e10, 1e20, 1e24], "best-case")
    assert np.isnan(grid[0, 0])
    assert grid[1, 0] < 0 < grid[2, 0]
