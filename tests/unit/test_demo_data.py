"""The demo's packaged SST-2 subset: the same rows, in the same order, as the demo's
subsample of the full GLUE file, and what the demo reads when no data folder exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from minidisc.cli import demo
from minidisc.tasks.demo_data import DEMO_TASK_FOLDER, packaged_demo_dir
from tests.helpers import REPO, SHARED_DATA, require_glue


@pytest.fixture(scope="module")
def tokenizer():
    from minidisc.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(None))  # the demo's teacher: packaged, offline


def _prepared(data_dir: Path, tokenizer):
    """The demo's data as its pipeline prepares it (subsampled, tokenized), read from ``data_dir``."""
    from minidisc.training.data import prepare_task_data

    cfg = demo.demo_config(data_dir)
    return prepare_task_data(cfg.data, tokenizer, seed=cfg.finetune.seed)


def test_packaged_subset_is_the_demos_selection_from_the_full_glue_data(tokenizer):
    from minidisc.tasks import load_split

    glue = require_glue()
    cfg = demo.demo_config(glue)
    for split, limit in (("train", cfg.data.max_train_samples), ("dev", cfg.data.max_eval_samples)):
        full = load_split("sst2", split, data_dir=glue, max_samples=limit, seed=cfg.finetune.seed)
        packaged = load_split("sst2", split, data_dir=packaged_demo_dir(), max_samples=limit, seed=cfg.finetune.seed)
        assert len(packaged) == len(full)
        for column in ("text_a", "text_b", "label"):  # idx (file row number) is not a model input
            assert packaged[column] == full[column], (split, column)

    # and what training sees: the tokenized splits and the importance subset, in order
    from_full, from_packaged = _prepared(glue, tokenizer), _prepared(packaged_demo_dir(), tokenizer)
    for part in ("train", "dev", "importance"):
        a, b = getattr(from_full, part), getattr(from_packaged, part)
        assert a.column_names == b.column_names
        assert a.to_dict() == b.to_dict(), part
    assert {k: v for k, v in from_full.sizes.items() if k != "data_source"} == {
        k: v for k, v in from_packaged.sizes.items() if k != "data_source"
    }


def test_demo_reads_the_packaged_subset_when_no_data_folder_exists(tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ../shared beside the working directory
    monkeypatch.setattr(demo, "_CHECKOUT", tmp_path / "checkout")  # nor beside the checkout
    monkeypatch.delenv("MINIDISC_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    cfg = demo.demo_config(None)
    assert cfg.data.data_dir is not None
    folder = Path(cfg.data.data_dir) / DEMO_TASK_FOLDER
    assert folder == packaged_demo_dir() / DEMO_TASK_FOLDER
    assert (folder / "train.tsv").is_file() and (folder / "dev.tsv").is_file()

    data = _prepared(None, tokenizer)
    assert (len(data.train), len(data.dev)) == (3000, 872)
    assert "packaged with minidisc" in data.sizes["data_source"]


def test_demo_data_dir_keeps_the_users_choices(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIDISC_DATA_DIR", raising=False)
    assert demo.demo_data_dir(tmp_path) == tmp_path  # --data-dir wins
    monkeypatch.setenv("MINIDISC_DATA_DIR", str(tmp_path))
    assert demo.demo_data_dir(None) is None  # resolve_data_dir reads the variable
    monkeypatch.delenv("MINIDISC_DATA_DIR")
    shared = tmp_path / "shared" / "data" / "glue" / DEMO_TASK_FOLDER
    shared.mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert demo.demo_data_dir(None) == shared.parent  # ../shared/data/glue beside the working directory


def test_package_data_ships_every_packaged_file():
    """pyproject's package-data globs cover every file of the packaged subset, so a
    wheel (not only this checkout) holds it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["minidisc"]
    package = REPO / "src" / "minidisc"
    shipped = {p for pattern in globs for p in package.glob(pattern)}
    files = {p for p in (package / "data").rglob("*") if p.is_file()}
    assert files and files <= shipped


# --- demo --llm: the packaged Gutenberg text -------------------------------------------------


def test_llm_demo_text_is_rebuilt_from_the_gutenberg_files(tmp_path):
    from minidisc.tasks.demo_data import PACKAGED_LM, build_lm_demo_text

    gutenberg = SHARED_DATA / "gutenberg"
    if not gutenberg.is_dir():
        pytest.skip(f"no Gutenberg folder at {gutenberg}")
    build_lm_demo_text(gutenberg, tmp_path)
    for name in ("train.txt", "heldout.txt"):
        assert (tmp_path / name).read_bytes() == (PACKAGED_LM / name).read_bytes(), name
    text = (PACKAGED_LM / "train.txt").read_text(encoding="utf-8")
    assert text.startswith("PRIDE AND PREJUDICE") and "\r" not in text and "GUTENBERG" not in text.upper()


def test_llm_demo_config_reads_the_packaged_text_with_the_decoder_defaults():
    from minidisc.schedules.lm_config import LM_STAGE, LMCompressConfig

    cfg = demo.demo_llm_config()
    assert all(Path(p).is_file() for p in (*cfg.corpus.train, *cfg.corpus.eval))
    assert cfg.teacher == "smollm2" and cfg.target_sparsity == 0.5 and cfg.sandwich == cfg.final == LM_STAGE
    defaults = LMCompressConfig(corpus={"train": ["x"]})
    assert (cfg.importance, cfg.layer_shapes, cfg.objective) == (defaults.importance, defaults.layer_shapes, defaults.objective)
    assert f"{cfg.stage_tokens(False):,}" in cfg.note and f"{cfg.stage_tokens(True):,}" in cfg.note


def test_llm_demo_refuses_the_sst2_data_dir(tmp_path):
    from tests.helpers import run_minidisc

    p = run_minidisc("demo", "--llm", "--data-dir", str(tmp_path), "-o", "run", cwd=tmp_path)
    assert p.returncode != 0 and "--data-dir" in p.stderr and not (tmp_path / "run").exists()
