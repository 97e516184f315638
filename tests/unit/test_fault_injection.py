"""A compress run killed with SIGKILL anywhere resumes to the uninterrupted result, bit
for bit: every stage is killed at least once (the teacher stage included), at seeded
random points, each in a fresh process, and every chain of kills ends in a resumed run
whose weights, report and manifest equal the reference run's, with no staging folder of
a killed stage left behind."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from minidisc.config import CompressConfig, TrainConfig, save_yaml
from tests.faults import COMPRESS_STAGES, compress_command, fingerprint, kill_in_stage, run_to_end
from tests.helpers import tiny_sst2_data, write_tiny_bert

STAGE = TrainConfig(epochs=2, batch_size=8, eval_batch_size=16, eval_steps=3, patience=None, seed=5)

# Ten kills in two chains, each in pipeline order: every stage, then the teacher stage
# twice in a row (a resumed stage killed again) and the two sandwich iterations.
CHAINS = {
    "every-stage": COMPRESS_STAGES,
    "training-stages": ("teacher", "teacher", "iter1", "iter2"),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny run's config file and the fingerprint of its uninterrupted run."""
    root = tmp_path_factory.mktemp("faults")
    cfg = CompressConfig(
        teacher=str(write_tiny_bert(root / "teacher")),
        # every example scored for importance: a sparsify stage long enough to be hit
        data=tiny_sst2_data(root / "glue", n_train=96, n_dev=16).model_copy(update={"importance_samples": 96}),
        # λ = 0 picks the best candidate, a sparser one than the target would be a tie,
        # so the run has an assistant and both iterations.
        target_sparsity=0.75, lam=0.0, iterations=2, truncation=0.25, grid=(0.0, 0.25, 0.5, 0.75),
        finetune=STAGE, sandwich=STAGE, final=STAGE,
    )
    config = root / "config.yaml"
    save_yaml(config, cfg)
    out = root / "reference"
    run_to_end(compress_command(config, out), cwd=root)
    return config, fingerprint(out), _stage_times(out)


@pytest.mark.parametrize("chain", CHAINS, ids=list(CHAINS))
def test_killed_runs_resume_bit_for_bit(reference, tmp_path, chain):
    config, expected, seconds = reference
    rng = random.Random(chain)  # seeded: the same kill points on every run of the suite
    out = tmp_path / "run"
    cmd = compress_command(config, out)
    landed = []
    for stage in CHAINS[chain]:
        if stage == "iter2" and "iter2" not in seconds:
            continue
        landed.append(kill_in_stage(cmd, out, stage, 0.5 * seconds[stage], rng, cwd=tmp_path))
    run_to_end(cmd, cwd=tmp_path)
    assert fingerprint(out) == expected
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "a killed stage's staging folder was left"
    wanted = [s for s in CHAINS[chain] if s in seconds]
    assert landed == wanted, f"kills landed in {landed}, meant for {wanted}"


def _stage_times(run_dir: Path) -> dict[str, float]:
    """Wall time of each stage of the reference run (seconds): the range of kill delays."""
    import json

    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    return {name: entry["wall_time_s"] for name, entry in stages.items()}
