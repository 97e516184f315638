"""Your own data on every command that takes ``--task``, held-out test data
(``--test-file``), data sets read with ``datasets`` (``--dataset``) and token
classification from files.

Small files and data sets are written by the tests; commands run in a fresh process
(:func:`tests.helpers.run_minidisc`) on a tiny random BERT with tiny budgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minidisc.config import DataConfig
from minidisc.errors import ConfigError, DataError
from minidisc.tasks.custom import check_custom_data, load_custom
from tests.helpers import run_minidisc, write_tiny_bert

WORDS = {"pos": ["good", "great", "fun"], "neg": ["bad", "awful", "dull"]}
TINY = ["--epochs", "1", "--batch-size", "8", "--max-length", "16", "--seed", "1"]
COLUMNS = ["--text-column", "utterance", "--label-column", "intent"]
#: Every command that takes --task, and the own-data options each must have.
COMMANDS = ("compress", "finetune", "sparsify", "distill", "takd", "maxidisc", "compare")
DATA_OPTIONS = ("--train-file", "--validation-file", "--test-file", "--dataset", "--dataset-config", "--split-names",
                "--text-column", "--label-column", "--task-type", "--metric", "--validation-fraction")


def records(n: int = 24, offset: int = 0) -> list[dict]:
    """``n`` rows with a learnable toy signal: ``utterance`` (text), ``intent`` (2 classes)."""
    out = []
    for i in range(offset, offset + n):
        label = ("pos", "neg")[i % 2]
        out.append({"utterance": f"a {WORDS[label][i % 3]} film number {i}", "intent": label})
    return out


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tagged(n: int = 24, offset: int = 0) -> list[dict]:
    """``n`` sentences of token lists and IOB2 tag lists: a person's name after "met"."""
    names = ["Ada", "Alan", "Grace", "Edsger"]
    out = []
    for i in range(offset, offset + n):
        first, last = names[i % 4], names[(i + 1) % 4]
        out.append({"tokens": ["we", "met", first, last, "in", "town", str(i)],
                    "tags": ["O", "O", "B-PER", "I-PER", "O", "O", "O"]})
    return out


def last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("commands") / "teacher")


# --- the options, declared once, on every command -------------------------------------------


def test_every_command_that_takes_task_takes_the_data_options():
    import typer.main

    import minidisc
    from minidisc.cli import app

    click = typer.main.get_command(app)
    for name in COMMANDS:
        flags = {flag for param in click.commands[name].params for flag in param.opts}
        assert "--task" in flags, name
        missing = [f for f in DATA_OPTIONS if f not in flags]
        assert not missing, f"{name} lacks {missing}"
        api = getattr(minidisc, name)
        import inspect

        params = inspect.signature(api).parameters
        assert {"train_file", "test_file", "dataset", "split_names", "text_column"} <= set(params), name


# distill, takd and maxidisc share compare's options (ScheduleOptions); the Python API test
# (test_python_api.py) runs all five in-process
@pytest.mark.parametrize("command", ["sparsify", "compare"])
def test_bad_data_stop_every_command_in_one_line_before_anything_is_written(tmp_path, teacher, command):
    jsonl(tmp_path / "train.jsonl", records())
    result = run_minidisc(command, "--teacher", str(teacher), "--train-file", "train.jsonl", "--text-column",
                          "utterance", "--label-column", "intnt", "-o", "run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith("error: train.jsonl, column 'intnt'") and "did you mean 'intent'" in line, line
    assert not (tmp_path / "run").exists()


def test_options_that_exclude_each_other(tmp_path):
    jsonl(tmp_path / "train.jsonl", records())
    result = run_minidisc("distill", "--task", "sst2", "--dataset", "some/data", "-o", "run", cwd=tmp_path)
    assert result.returncode == 2 and "--task sst2 and --dataset exclude each other" in result.stderr, result.stderr
    with pytest.raises(ValueError, match="train_file and dataset exclude each other"):
        DataConfig(train_file="train.jsonl", dataset="some/data")
    with pytest.raises(ValueError, match="apply only to dataset"):
        DataConfig(train_file="train.jsonl", split_names={"train": "a"})
    with pytest.raises(ValueError, match="unknown role 'dev'"):
        DataConfig(dataset="some/data", split_names={"dev": "a"})
    with pytest.raises(ValueError, match="test_file apply only to your own data"):
        DataConfig(test_file="test.jsonl")
    result = run_minidisc("finetune", "--dataset", "./data", "--split-names", "train:a", "-o", "ft", cwd=tmp_path)
    assert result.returncode == 2 and "--split-names expects role=split" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "ft").exists()


# --- --test-file --------------------------------------------------------------------------------


def test_test_file_is_checked_up_front(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", records())
    unseen = records(6, 40)
    unseen[3]["intent"] = "angry"
    cfg = DataConfig(train_file=str(train), test_file=str(jsonl(tmp_path / "test.jsonl", unseen)),
                     text_columns=("utterance",), label_column="intent")
    with pytest.raises(DataError, match=r"test.jsonl, row 4, column 'intent': label 'angry' never occurs in"):
        check_custom_data(cfg, seed=1, batch_size=8)
    missing = cfg.model_copy(update={"test_file": str(tmp_path / "nope.jsonl")})
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        check_custom_data(missing, seed=1, batch_size=8)


def test_distill_reports_teacher_and_student_on_the_test_file(tmp_path, teacher):
    from minidisc.fileio import read_json

    jsonl(tmp_path / "train.jsonl", records(24))
    jsonl(tmp_path / "test.jsonl", records(10, 100))
    result = run_minidisc("distill", "--teacher", str(teacher), "--train-file", "train.jsonl", "--test-file",
                          "test.jsonl", *COLUMNS, "--validation-fraction", "0.25", "--sparsity", "0.5", "--grid",
                          "0,0.5", "--importance-samples", "8", *TINY, "-o", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = read_json(tmp_path / "run" / "report.json")
    for model in ("teacher", "student"):
        test = report[model]["test"]
        assert set(test) == {"accuracy", "main"} and 0.0 <= test["main"] <= 1.0, model
    assert report["data"]["test_examples"] == 10 and report["data"]["custom"]["test"] == "file test.jsonl"
    text = (tmp_path / "run" / "report.md").read_text()
    assert "/ 10 test examples" in text
    assert "- teacher test main (held-out test data, evaluated once at the end)" in text
    assert "- student test main" in text


# --- --dataset ---------------------------------------------------------------------------------


def test_a_dataset_folder_of_files_and_a_saved_dataset_give_the_same_data(tmp_path):
    from datasets import Dataset, DatasetDict

    files = tmp_path / "files"
    jsonl(files / "train.jsonl", records(24))
    jsonl(files / "dev.jsonl", records(8, 50))
    jsonl(files / "test.jsonl", records(6, 80))
    common = {"text_columns": ("utterance",), "label_column": "intent"}
    from_files = load_custom(DataConfig(dataset=str(files), split_names={"test": "test"}, **common), seed=1)
    # load_dataset names a folder's splits by file name (dev.jsonl is its validation split)
    assert from_files.record["validation"] == f"dataset {files}, split validation"
    assert from_files.record["test"] == f"dataset {files}, split test"
    assert (len(from_files.train), len(from_files.dev), len(from_files.test)) == (24, 8, 6)

    saved = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(records(24)), "dev": Dataset.from_list(records(8, 50)),
                 "test": Dataset.from_list(records(6, 80))}).save_to_disk(str(saved))
    from_disk = load_custom(DataConfig(dataset=str(saved), split_names={"test": "test"}, **common), seed=1)
    assert from_disk.record["validation"] == f"dataset {saved}, split dev"  # dev found without --split-names
    for a, b in ((from_files.train, from_disk.train), (from_files.dev, from_disk.dev), (from_files.test, from_disk.test)):
        assert a.to_dict() == b.to_dict()
    assert from_files.spec == from_disk.spec
    named = load_custom(DataConfig(dataset=str(saved), split_names={"train": "test", "validation": "dev"}, **common),
                        seed=1)
    assert named.train.to_dict() == from_disk.test.to_dict() and named.test is None  # no test unless named
    one = tmp_path / "one"
    Dataset.from_list(records(24)).save_to_disk(str(one))  # a single Dataset is the train split
    assert "held out" in load_custom(DataConfig(dataset=str(one), **common), seed=1).record["validation"]


def test_dataset_errors_name_the_data_set_and_split(tmp_path):
    from datasets import Dataset, DatasetDict

    saved = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(records(24))}).save_to_disk(str(saved))
    common = {"text_columns": ("utterance",), "label_column": "intent"}
    with pytest.raises(DataError, match=r"dataset .*saved: no split 'test' for test \(it has train\); "
                                        r"set --split-names test=NAME"):
        load_custom(DataConfig(dataset=str(saved), split_names={"test": "test"}, **common), seed=1)
    with pytest.raises(DataError, match=r"dataset .*saved, split train, column 'intnt': no such column"):
        load_custom(DataConfig(dataset=str(saved), text_columns=("utterance",), label_column="intnt"), seed=1)
    with pytest.raises(DataError, match="the folder does not exist"):
        load_custom(DataConfig(dataset=str(tmp_path / "missing"), **common), seed=1)
    with pytest.raises(ConfigError, match="save_to_disk folder, which has no configurations"):
        load_custom(DataConfig(dataset=str(saved), dataset_config="en", **common), seed=1)


def test_finetune_on_a_dataset_with_a_test_split(tmp_path, teacher):
    from datasets import Dataset, DatasetDict

    from minidisc.fileio import read_json

    DatasetDict({"train": Dataset.from_list(records(24)), "heldout": Dataset.from_list(records(6, 80))}
                ).save_to_disk(str(tmp_path / "saved"))
    result = run_minidisc("finetune", "--model", str(teacher), "--dataset", "saved", "--split-names",
                          "train=train,test=heldout", *COLUMNS, "--validation-fraction", "0.25", *TINY, "-o", "ft",
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_json(tmp_path / "ft" / "finetune.json")
    assert summary["data"]["custom"]["train_file"] == "dataset saved, split train"
    assert summary["data"]["test_examples"] == 6 and set(summary["test"]) == {"accuracy", "main"}
    assert "test accuracy" in result.stdout
    conflict = run_minidisc("finetune", "--dataset", "saved", "--train-file", "x.jsonl", "-o", "ft2", cwd=tmp_path)
    assert conflict.returncode == 2 and "train_file and dataset exclude each other" in conflict.stderr
    assert not (tmp_path / "ft2").exists()


# --- token classification from files --------------------------------------------------------


def test_tags_from_files_are_token_classification(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", tagged())
    data = load_custom(DataConfig(train_file=str(train)), seed=1)  # tokens/tags found without options
    assert data.spec.task_type == "token_classification"
    assert data.spec.label_names == ("B-PER", "I-PER", "O")
    assert data.record["metric"] == "entity_f1" and data.spec.metric_names == ("f1",)
    assert data.train.column_names == ["tokens", "tags", "idx"]
    assert data.train[0]["tags"] == [2, 2, 0, 1, 2, 2, 2]
    renamed = [{"words": r["tokens"], "ner": r["tags"]} for r in tagged()]
    other = load_custom(DataConfig(train_file=str(jsonl(tmp_path / "other.jsonl", renamed)), text_columns=("words",),
                                   label_column="ner"), seed=1)
    assert other.train.to_dict() == data.train.to_dict()


def test_bad_tags_are_named(tmp_path):
    short = tagged()
    short[5]["tags"] = short[5]["tags"][:-1]
    unseen = tagged(6, 50)
    unseen[2]["tags"] = ["O", "O", "B-LOC", "O", "O", "O", "O"]
    mixed = tagged()
    mixed[3]["tags"] = "O"
    cases = {
        "length": (DataConfig(train_file=str(jsonl(tmp_path / "short.jsonl", short))),
                   r"short.jsonl, row 6, column 'tags': 6 tags for 7 tokens of column 'tokens'"),
        "unseen": (DataConfig(train_file=str(jsonl(tmp_path / "train.jsonl", tagged())),
                              validation_file=str(jsonl(tmp_path / "dev.jsonl", unseen))),
                   r"dev.jsonl, row 3, column 'tags': tag 'B-LOC' never occurs in"),
        "mixed": (DataConfig(train_file=str(jsonl(tmp_path / "mixed.jsonl", mixed))),
                  r"mixed.jsonl, row 4, column 'tags': label 'O' is a text, row 1's is a list of tags"),
        "metric": (DataConfig(train_file=str(tmp_path / "train.jsonl"), metric="accuracy"),
                   "metric accuracy does not suit token_classification"),
    }
    for cfg, pattern in cases.values():
        with pytest.raises((DataError, ConfigError), match=pattern):
            load_custom(cfg, seed=1)
    plain = jsonl(tmp_path / "plain.jsonl", records())
    with pytest.raises(DataError, match="token classification needs a list of tags per row"):
        load_custom(DataConfig(train_file=str(plain), text_columns=("utterance",), label_column="intent",
                               task_type="token_classification"), seed=1)


def test_finetune_tags_from_a_file_reports_entity_f1(tmp_path, teacher):
    from minidisc.fileio import read_json

    jsonl(tmp_path / "train.jsonl", tagged(24))
    jsonl(tmp_path / "dev.jsonl", tagged(8, 40))
    result = run_minidisc("finetune", "--model", str(teacher), "--train-file", "train.jsonl", "--validation-file",
                          "dev.jsonl", "--text-column", "tokens", "--label-column", "tags", *TINY, "-o", "ft",
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_json(tmp_path / "ft" / "finetune.json")
    assert summary["data"]["custom"]["task_type"] == "token_classification"
    assert {"f1", "precision", "recall", "main"} <= set(summary["dev"]) and summary["dev"]["main"] == summary["dev"]["f1"]
    config = read_json(tmp_path / "ft" / "config.json")
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"] == {"0": "B-PER", "1": "I-PER", "2": "O"}
