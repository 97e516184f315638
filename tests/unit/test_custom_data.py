"""Your own labelled files (``--train-file`` ...): the five formats give one data set,
pairs and regression work, labels are sorted and stable and end up in the exported
model's config, and every bad input stops the run with one line naming the file, row
and column before anything is written.

Small files are written by the tests; the CLI runs in a fresh process on a tiny random
BERT with tiny budgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minidisc.config import CompressConfig, DataConfig, TrainConfig
from minidisc.errors import ConfigError, DataError
from minidisc.tasks.custom import check_custom_data, load_custom, stratified_split
from tests.helpers import run_minidisc, write_tiny_bert

WORDS = {"pos": ["good", "great", "fun"], "neg": ["bad", "awful", "dull"], "meh": ["okay", "fine", "plain"]}
STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, patience=None, seed=1)
TINY = ["--epochs", "1", "--batch-size", "8", "--max-length", "16", "--seed", "1"]


def records(n: int = 30, offset: int = 0) -> list[dict]:
    """``n`` rows with a learnable toy signal: ``utterance`` (text), ``intent`` (3 classes)."""
    out = []
    for i in range(offset, offset + n):
        label = ("pos", "neg", "meh")[i % 3]
        out.append({"utterance": f"a {WORDS[label][i % 3]} film number {i}", "intent": label})
    return out


def write(path: Path, rows: list[dict]) -> Path:
    """``rows`` as a file of the format its extension names."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        path.write_text(frame.to_csv(index=False), encoding="utf-8")
    return path


def data_cfg(train: Path, validation: Path | None = None, **fields) -> DataConfig:
    return DataConfig(train_file=str(train), validation_file=str(validation) if validation else None,
                      text_columns=fields.pop("text_columns", ("utterance",)),
                      label_column=fields.pop("label_column", "intent"), **fields)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("custom") / "teacher")


# --- reading ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".parquet"])
def test_every_format_gives_the_same_data_set(tmp_path, suffix):
    reference = load_custom(data_cfg(write(tmp_path / "train.jsonl", records()),
                                     write(tmp_path / "dev.jsonl", records(9, 30))), seed=1)
    other = load_custom(data_cfg(write(tmp_path / f"train{suffix}", records()),
                                 write(tmp_path / f"dev{suffix}", records(9, 30))), seed=1)
    assert other.spec == reference.spec
    assert other.train.to_dict() == reference.train.to_dict()
    assert other.dev.to_dict() == reference.dev.to_dict()
    assert other.train.features == reference.train.features


def test_labels_sorted_stable_and_recorded(tmp_path):
    rows = records()
    first = load_custom(data_cfg(write(tmp_path / "a.jsonl", rows)), seed=1)
    shuffled = load_custom(data_cfg(write(tmp_path / "b.jsonl", rows[::-1])), seed=5)
    assert first.spec.label_names == shuffled.spec.label_names == ("meh", "neg", "pos")
    assert first.record["labels"] == ["meh", "neg", "pos"]
    assert first.spec.task_type == "classification" and first.record["metric"] == "accuracy"
    # a few integers are classes, sorted as numbers (not as text: 10 after 2)
    ints = [{"utterance": r["utterance"], "intent": (2, 10, 1)[i % 3]} for i, r in enumerate(rows)]
    spec = load_custom(data_cfg(write(tmp_path / "ints.csv", ints)), seed=1).spec
    assert spec.label_names == ("1", "2", "10")


def test_split_without_validation_file_is_seeded_and_stratified(tmp_path):
    cfg = data_cfg(write(tmp_path / "train.jsonl", records(60)), validation_fraction=0.2)
    data = load_custom(cfg, seed=3)
    assert len(data.dev) == 12 and len(data.train) == 48
    assert sorted(data.dev["label"]) == [0] * 4 + [1] * 4 + [2] * 4  # every class, in proportion
    assert set(data.dev["idx"]).isdisjoint(data.train["idx"])
    assert "20 % of" in data.record["validation"] and "seed 3" in data.record["validation"]
    labels = [(2, 1, 0)[i % 3] for i in range(60)]  # ids of pos, neg, meh (sorted names)
    assert stratified_split(labels, 0.2, 3, True)[1].tolist() == data.dev["idx"]
    assert stratified_split(labels, 0.2, 4, True)[1].tolist() != data.dev["idx"]


def test_pairs_and_regression(tmp_path):
    pairs = [{"q": r["utterance"], "a": f"answer {i}", "score": 0.5 * (i % 5)} for i, r in enumerate(records())]
    data = load_custom(data_cfg(write(tmp_path / "p.csv", pairs), text_columns=("q", "a"), label_column="score"), seed=1)
    assert data.spec.is_pair and data.spec.is_regression and data.spec.num_labels == 1
    assert data.record["metric"] == "pearson_spearman" and data.spec.metric_names == ("pearson", "spearman")
    assert data.train[0]["text_b"].startswith("answer ")
    # integer scores are classes unless --task-type says regression
    ints = [{**p, "score": i % 4} for i, p in enumerate(pairs)]
    path = write(tmp_path / "i.csv", ints)
    assert load_custom(data_cfg(path, text_columns=("q", "a"), label_column="score"), seed=1).spec.num_labels == 4
    forced = load_custom(data_cfg(path, text_columns=("q", "a"), label_column="score", task_type="regression"), seed=1)
    assert forced.spec.is_regression


# --- bad input: one line naming file, row, column; nothing written ----------------------


def _bad_cases(tmp: Path) -> dict[str, tuple[DataConfig, tuple[str, ...]]]:
    rows = records()
    empty = [dict(r) for r in rows]
    empty[4]["utterance"] = "  "
    unseen = records(9, 30)
    unseen[2]["intent"] = "angry"
    mixed = [dict(r) for r in rows]
    mixed[6]["intent"] = 7
    mixed_csv = [dict(r) for r in rows]
    mixed_csv[3]["intent"] = "12"
    latin = tmp / "latin.csv"
    write(latin, rows)
    latin.write_bytes(latin.read_bytes().replace(b"film number 4", b"f\xe9lm number 4"))
    single = [{**r, "intent": "pos"} for r in rows]
    return {
        "misspelled column": (data_cfg(write(tmp / "train.jsonl", rows), label_column="intnet"),
                              ("train.jsonl", "column 'intnet'", "did you mean 'intent'")),
        "missing text column": (data_cfg(tmp / "train.jsonl", text_columns=("text",)),
                                ("train.jsonl", "column 'text'", "utterance, intent")),
        "empty text": (data_cfg(write(tmp / "empty.jsonl", empty)), ("empty.jsonl", "row 5", "column 'utterance'", "empty text")),
        "unseen validation label": (data_cfg(tmp / "train.jsonl", write(tmp / "dev.jsonl", unseen)),
                                    ("dev.jsonl", "row 3", "column 'intent'", "'angry' never occurs in")),
        "single class": (data_cfg(write(tmp / "one.jsonl", single)), ("one.jsonl", "column 'intent'", "single class")),
        "mixed label types": (data_cfg(write(tmp / "mixed.jsonl", mixed)), ("mixed.jsonl", "row 7", "column 'intent'")),
        "mixed label types in CSV": (data_cfg(write(tmp / "mixed.csv", mixed_csv)), ("mixed.csv", "row 4", "column 'intent'")),
        "not UTF-8": (data_cfg(latin), ("latin.csv", "row 5", "column 'utterance'", "not UTF-8")),
        "unknown extension": (data_cfg(write(tmp / "train.xlsx", rows)), ("train.xlsx", "unknown file type '.xlsx'")),
        "fewer rows than a batch": (data_cfg(write(tmp / "few.jsonl", records(6)), write(tmp / "ok.jsonl", records(3))),
                                    ("few.jsonl", "6 training rows, fewer than one batch of 8")),
    }


def test_every_bad_input_is_named_before_anything_is_written(tmp_path, teacher):
    from minidisc.schedules.minidisc import run_compress

    for name, (cfg, fragments) in _bad_cases(tmp_path).items():
        out = tmp_path / f"run-{name.replace(' ', '-')}"
        config = CompressConfig(teacher=str(teacher), data=cfg, finetune=STAGE, sandwich=STAGE, final=STAGE)
        with pytest.raises(DataError) as err:
            run_compress(config, out)
        message = str(err.value)
        assert "\n" not in message, name
        for fragment in fragments:
            assert fragment in message, f"{name}: {message}"
        assert not out.exists(), name


def test_options_that_do_not_fit_together():
    with pytest.raises(ValueError, match="exclude each other"):
        DataConfig(task="sst2", train_file="x.csv")
    with pytest.raises(ValueError, match="apply only to your own data"):
        DataConfig(label_column="intent")
    with pytest.raises(ValueError, match="one column .* or two"):
        DataConfig(train_file="x.csv", text_columns=("a", "b", "c"))
    with pytest.raises(ValueError, match="unknown metric"):
        DataConfig(train_file="x.csv", metric="bleu")


def test_metric_must_suit_the_task_type(tmp_path):
    path = write(tmp_path / "train.jsonl", records())
    with pytest.raises(ConfigError, match="does not suit classification"):
        check_custom_data(data_cfg(path, metric="pearson-spearman"), seed=1, batch_size=8)


def test_cli_errors_are_one_line(tmp_path, teacher):
    write(tmp_path / "train.jsonl", records())
    result = run_minidisc("compress", "--teacher", str(teacher), "--train-file", "train.jsonl", "--text-column",
                          "utterance", "--label-column", "intnt", *TINY, "-o", "run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: train.jsonl, column 'intnt'") and "did you mean 'intent'" in last, last
    assert not (tmp_path / "run").exists()
    result = run_minidisc("finetune", "--model", str(teacher), "--task", "sst2", "--train-file", "train.jsonl",
                          "-o", "ft", cwd=tmp_path)
    assert result.returncode != 0 and "exclude each other" in result.stderr, result.stderr
    assert not (tmp_path / "ft").exists()


# --- end to end through the CLI -------------------------------------------------------


def test_compress_from_files_exports_the_label_names(tmp_path, teacher):
    from transformers import AutoTokenizer, pipeline

    from minidisc import load_student
    from minidisc.fileio import read_json

    write(tmp_path / "train.jsonl", records(30))
    (tmp_path / "cfg.yaml").write_text(
        "data:\n  train_file: train.jsonl\n  text_columns: [utterance]\n  label_column: intent\n"
        "  max_length: 16\n", encoding="utf-8")
    result = run_minidisc("compress", "--teacher", str(teacher), "--config", "cfg.yaml", "--target-sparsity", "0.5",
                          "--truncation", "0.5", "--grid", "0,0.5", "--iterations", "1", *TINY, "-o", "run",
                          cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    names = {0: "meh", 1: "neg", 2: "pos"}
    for folder in ("teacher", "student"):
        config = read_json(run / folder / "config.json")
        assert config["id2label"] == {str(k): v for k, v in names.items()}, folder
        assert config["label2id"] == {v: k for k, v in names.items()}, folder
    recorded = read_json(run / "manifest.json")["stages"]["teacher"]["data"]["custom"]
    assert recorded["labels"] == ["meh", "neg", "pos"] and "held out" in recorded["validation"]
    assert "10 % of train.jsonl held out (stratified by label, seed 1)" in (run / "report.md").read_text()
    classify = pipeline("text-classification", model=load_student(run / "student"),
                        tokenizer=AutoTokenizer.from_pretrained(run / "student"))
    assert classify("a great film")[0]["label"] in names.values()


def test_finetune_pairs_with_validation_file_and_macro_f1(tmp_path, teacher):
    from minidisc.fileio import read_json

    pairs = [{"premise": r["utterance"], "hypothesis": f"about film {i}", "y": r["intent"]}
             for i, r in enumerate(records(24))]
    write(tmp_path / "train.csv", pairs)
    write(tmp_path / "dev.csv", pairs[:9])
    result = run_minidisc("finetune", "--model", str(teacher), "--train-file", "train.csv", "--validation-file",
                          "dev.csv", "--text-column", "premise", "--text-column", "hypothesis", "--label-column", "y",
                          "--metric", "macro-F1", *TINY, "-o", "ft", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_json(tmp_path / "ft" / "finetune.json")
    assert summary["task"] == "custom"
    assert summary["dev"]["main"] == summary["dev"]["macro_f1"]
    assert summary["data"]["custom"]["validation"] == "file dev.csv"
    assert summary["data"]["dev_examples"] == 9
    assert read_json(tmp_path / "ft" / "config.json")["id2label"] == {"0": "meh", "1": "neg", "2": "pos"}


def test_finetune_regression_from_tsv(tmp_path, teacher):
    from minidisc.fileio import read_json

    rows = [{"text": r["utterance"], "label": 0.25 * (i % 5)} for i, r in enumerate(records(24))]
    write(tmp_path / "train.tsv", rows)
    result = run_minidisc("finetune", "--model", str(teacher), "--train-file", "train.tsv",
                          "--validation-fraction", "0.25", *TINY, "-o", "ft", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_json(tmp_path / "ft" / "finetune.json")
    assert summary["data"]["custom"]["task_type"] == "regression"
    assert summary["dev"]["main"] == pytest.approx((summary["dev"]["pearson"] + summary["dev"]["spearman"]) / 2)
    assert summary["data"]["dev_examples"] == 6


def test_a_finetuned_teacher_must_agree_with_the_labels(tmp_path):
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, check_head_labels
    from minidisc.schedules.minidisc import run_compress
    from tests.helpers import edit_config

    teacher = write_tiny_bert(tmp_path / "teacher", trained_head=True)  # a 2-class head, LABEL_0/LABEL_1
    rows = [r for r in records(45) if r["intent"] != "meh"]
    path = write(tmp_path / "train.jsonl", rows)
    assert "no label names" in check_head_labels(ModelSource(str(teacher)), ("neg", "pos"))
    edit_config(teacher, id2label={"0": "neg", "1": "pos"}, label2id={"neg": 0, "pos": 1})
    assert check_head_labels(ModelSource(str(teacher)), ("neg", "pos")) is None
    edit_config(teacher, id2label={"0": "pos", "1": "neg"}, label2id={"pos": 0, "neg": 1})
    config = CompressConfig(teacher=str(teacher), teacher_finetuned=True, data=data_cfg(path),
                            finetune=STAGE, sandwich=STAGE, final=STAGE)
    with pytest.raises(ModelError, match="label names differ .* class 0: 'pos' vs 'neg'"):
        run_compress(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    three = write(tmp_path / "three.jsonl", records(30))
    with pytest.raises(ModelError, match="head has 2 classes and the data 3"):
        run_compress(config.model_copy(update={"data": data_cfg(three)}), tmp_path / "run")


def test_file_options_round_trip_and_leave_glue_configs_as_they_were(tmp_path):
    import yaml

    from minidisc.config import load_yaml, save_yaml

    assert set(DataConfig().model_dump()) == {"task", "data_dir", "max_train_samples", "max_eval_samples",
                                               "max_length", "importance_samples"}  # old runs still resume
    cfg = CompressConfig(data=data_cfg(Path("train.jsonl"), text_columns=("q", "a"), metric="macro-f1"))
    save_yaml(tmp_path / "c.yaml", cfg)
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["data"]["text_columns"] == ["q", "a"]
    assert load_yaml(tmp_path / "c.yaml", CompressConfig) == cfg
    assert cfg.data.task == "custom"
