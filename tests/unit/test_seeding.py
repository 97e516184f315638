"""``MINIDISC_DETERMINISTIC`` selects deterministic kernels at every stage's seeding; unset,
torch's defaults are left alone. Each test runs in a fresh process, since the choice is
global to a process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import os, torch; from minidisc.seeding import seed_everything; seed_everything(3); "
    "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
    "torch.backends.cudnn.deterministic, os.environ.get('CUBLAS_WORKSPACE_CONFIG'), torch.rand(1).item())"
)


def _probe(value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MINIDISC_DETERMINISTIC", "CUBLAS_WORKSPACE_CONFIG")}
    if value is not None:
        env["MINIDISC_DETERMINISTIC"] = value
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, env=env)
    return out.stdout.split()


@pytest.mark.parametrize("value", ["1", "true"])
def test_deterministic_kernels_on_request(value):
    on = _probe(value)
    assert on[:4] == ["True", "True", "True", ":4096:8"]
    assert on[4] == _probe(None)[4]  # the same seed draws the same numbers either way


@pytest.mark.parametrize("value", [None, "0", ""])
def test_torch_defaults_untouched_otherwise(value):
    assert _probe(value)[:4] == ["False", "False", "False", "None"]
