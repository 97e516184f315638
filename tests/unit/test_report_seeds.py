"""``minidisc report RUN RUN -o DIR``: one comparison summarised over seeds (mean ± std per
arm, paired differences to a reference arm), on two real tiny ``compare --task lm`` runs
and in a fresh process; and its refusals."""

from __future__ import annotations

import json
import shutil
import statistics

import pytest

from minidisc.errors import ConfigError
from tests.helpers import run_minidisc

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    import minidisc
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    root = tmp_path_factory.mktemp("seeds")
    write_decoder_teacher(root / "teacher", layers=2)
    write_corpus(root / "train.txt", lines=80)
    write_corpus(root / "eval.txt", lines=12, seed=1)
    for seed in (1, 2):
        minidisc.compare(
            task="lm", teacher=str(root / "teacher"), corpus=[str(root / "train.txt")],
            eval_corpus=[str(root / "eval.txt")], block_size=16, selection_blocks=4, calibration_blocks=4,
            grid="0,0.25,0.5", target=0.5, budget_tokens=32, batch_size=2, eval_steps=2, learning_rate=1e-3,
            schedules="direct,random", seed=seed, output=root / f"run{seed}")
    return root


def test_the_summary_is_the_seeds_statistics(two_seeds):
    root = two_seeds
    p = run_minidisc("report", "run1", "run2", "-o", "summary", cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    reports = [json.loads((root / f"run{s}" / "report.json").read_text()) for s in (1, 2)]
    summary = json.loads((root / "summary" / "seeds.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["reference"] == "direct"  # no MiniDisc arm ran
    assert summary["metrics"] == ["PPL selection slice", "PPL eval.txt"]

    def ppl(report, arm):
        row = next(r for r in report["rows"] if r["schedule"] == arm)
        return row["heldout"][next(iter(row["heldout"]))]["perplexity"]

    for arm in ("direct", "random"):
        values = [ppl(r, arm) for r in reports]
        got = summary["arms"][arm]["PPL eval.txt"]
        assert got["values"] == values and got["mean"] == pytest.approx(statistics.fmean(values))
        assert got["std"] == pytest.approx(statistics.stdev(values))
    diffs = [ppl(r, "random") - ppl(r, "direct") for r in reports]
    d = summary["differences"]["random"]["PPL eval.txt"]
    assert d["values"] == pytest.approx(diffs) and d["reference_better_in"] == sum(x > 0 for x in diffs)
    assert "direct" not in summary["differences"]
    text = (root / "summary" / "seeds.md").read_text()
    assert "Random importance + KD" in text and "Paired differences to Direct KD" in text

    # written once: a second summary into the same folder needs --overwrite
    again = run_minidisc("report", "run1", "run2", "-o", "summary", cwd=root)
    assert again.returncode != 0 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert run_minidisc("report", "run1", "run2", "-o", "summary", "--overwrite", cwd=root).returncode == 0


def test_runs_that_are_not_seeds_of_one_comparison_are_refused(two_seeds, tmp_path):
    from minidisc.report.seeds import read_comparisons, summarize_seeds

    root = two_seeds
    with pytest.raises(ConfigError, match="same seed"):
        read_comparisons([root / "run1", root / "run1"])
    with pytest.raises(ConfigError, match="two or more"):
        read_comparisons([root / "run1"])
    with pytest.raises(ConfigError, match="not an arm"):
        summarize_seeds(read_comparisons([root / "run1", root / "run2"]), reference="minidisc")
    other = tmp_path / "other"
    shutil.copytree(root / "run2", other)
    report = json.loads((other / "report.json").read_text())
    report["budgets"]["final_tokens"] *= 2
    (other / "report.json").write_text(json.dumps(report))
    with pytest.raises(ConfigError, match="budgets"):
        read_comparisons([root / "run1", other])
    p = run_minidisc("report", str(root / "run1"), str(root / "run2"), cwd=tmp_path)  # no -o
    assert p.returncode != 0 and "-o" in p.stderr and "Traceback" not in p.stderr
    with pytest.raises(ConfigError, match="no report.json"):
        read_comparisons([root / "run1", tmp_path])


def test_beyond_the_spread_needs_one_sign_in_every_seed_and_a_mean_above_the_spread():
    from minidisc.report.seeds import summarize_seeds

    def report(seed, direct, minidisc):
        rows = [{"schedule": s, "dev": {"perplexity": v}, "heldout": {"a.txt": {"perplexity": v}},
                 "cost_multiple": 1.0, "cost_wall_time_s": 1.0} for s, v in (("direct", direct), ("minidisc", minidisc))]
        return {"task": "lm", "seed": seed, "rows": rows}

    clear = summarize_seeds([report(1, 110, 100), report(2, 111, 100), report(3, 109, 101)])
    d = clear["differences"]["direct"]["PPL a.txt"]
    assert clear["reference"] == "minidisc" and d["reference_better_in"] == 3 and d["beyond_spread"]
    mixed = summarize_seeds([report(1, 110, 100), report(2, 99, 100), report(3, 109, 101)])
    assert not mixed["differences"]["direct"]["PPL a.txt"]["beyond_spread"]  # worse in one seed
