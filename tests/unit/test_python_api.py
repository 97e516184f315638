"""The Python API (``minidisc.finetune``, ``minidisc.compress`` …) through its real entry
points, with data and models in memory: a DataFrame, a Dataset and a DatasetDict give the
data the equivalent file gives; bad data give the command line's errors, before anything
is written; runs resume and refuse other data as on the command line; a loaded model
serves as the teacher; the worked example of docs/python-api.md runs in a fresh process.

Tiny random BERTs, toy data and tiny budgets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minidisc
from minidisc.errors import ConfigError, DataError, RunExistsError
from minidisc.fileio import read_json
from tests.helpers import REPO, run_minidisc, write_tiny_bert, write_tiny_sst2

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = {"pos": ["good", "great", "fun"], "neg": ["bad", "awful", "dull"], "meh": ["okay", "fine", "plain"]}
TINY = {"epochs": 1, "batch_size": 8, "max_length": 16, "seed": 1}
COLUMNS = {"text_column": "utterance", "label_column": "intent"}


def rows(n: int = 30) -> list[dict]:
    """``n`` rows with a learnable toy signal: ``utterance`` (text), ``intent`` (3 classes)."""
    return [{"utterance": f"a {WORDS[label][i % 3]} film number {i}", "intent": label}
            for i in range(n) for label in [("pos", "neg", "meh")[i % 3]]]


def frame(n: int = 30):
    import pandas as pd

    return pd.DataFrame(rows(n))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("api") / "teacher")


def finetuned(result) -> tuple[dict, dict]:
    """What a finetune run read and reached: its data record (names aside) and dev metrics."""
    data = dict(result.details["data"])
    custom = {k: v for k, v in data.pop("custom").items() if k not in ("train_file", "validation")}
    data.pop("data_source")
    return {**data, **custom}, result.metrics["finetune"]


# --- data in memory ------------------------------------------------------------------------


def test_dataframe_dataset_and_file_give_the_same_run(tmp_path, teacher):
    from datasets import Dataset

    path = write_jsonl(tmp_path / "train.jsonl", rows())
    common = {"model": str(teacher), **COLUMNS, **TINY}
    from_file = minidisc.finetune(train_file=path, output=tmp_path / "file", **common)
    from_frame = minidisc.finetune(train_file=frame(), output=tmp_path / "frame", **common)
    from_dataset = minidisc.finetune(train_file=Dataset.from_list(rows()), output=tmp_path / "dataset", **common)
    assert finetuned(from_frame) == finetuned(from_file) == finetuned(from_dataset)  # same rows, labels, metrics
    record = from_frame.details["data"]["custom"]
    assert record["labels"] == ["meh", "neg", "pos"]
    assert re.fullmatch(r"10 % of in-memory DataFrame \([0-9a-f]{16}\) held out \(stratified by label, seed 1\)",
                        record["validation"]), record["validation"]
    assert from_frame.student == tmp_path / "frame" and (from_frame.student / "config.json").is_file()
    assert read_json(from_frame.student / "config.json")["id2label"] == {"0": "meh", "1": "neg", "2": "pos"}


def test_a_dataset_dict_and_a_data_set_folder(tmp_path, teacher):
    from datasets import ClassLabel, Dataset, DatasetDict

    names = ClassLabel(names=["pos", "neg", "meh"])  # ids → names, then sorted like a file's labels
    encoded = [{"utterance": r["utterance"], "intent": names.str2int(r["intent"])} for r in rows()]
    splits = DatasetDict({"train": Dataset.from_list(encoded[:24]), "validation": Dataset.from_list(encoded[24:])})
    splits = splits.cast_column("intent", names)
    result = minidisc.finetune(model=str(teacher), dataset=splits, output=tmp_path / "dict", **COLUMNS, **TINY)
    record = result.details["data"]["custom"]
    assert record["labels"] == ["meh", "neg", "pos"]
    assert record["validation"].startswith("in-memory DatasetDict, split validation (")
    assert result.details["data"]["dev_examples"] == 6

    folder = tmp_path / "intents"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows()[:24])
    write_jsonl(folder / "validation.jsonl", rows()[24:])
    local = minidisc.finetune(model=str(teacher), dataset=str(folder), output=tmp_path / "folder", **COLUMNS, **TINY)
    assert finetuned(local)[0] == finetuned(result)[0]
    assert local.details["data"]["custom"]["train_file"] == f"dataset {folder}, split train"  # --dataset's record


BAD = {
    "empty text": ({"utterance": " "}, 3),
    "mixed label types": ({"intent": 7}, 5),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rows_give_the_file_error_and_write_nothing(tmp_path, teacher, case):
    change, row = BAD[case]
    bad = rows()
    bad[row - 1] = {**bad[row - 1], **change}
    import pandas as pd

    path = write_jsonl(tmp_path / "train.jsonl", bad)
    kwargs = {"model": str(teacher), **COLUMNS, **TINY}
    with pytest.raises(DataError) as from_file:
        minidisc.finetune(train_file=path, output=tmp_path / "a", **kwargs)
    with pytest.raises(DataError) as from_frame:
        minidisc.finetune(train_file=pd.DataFrame(bad), output=tmp_path / "b", **kwargs)
    name = re.match(r"in-memory DataFrame \([0-9a-f]{16}\)", str(from_frame.value)).group(0)
    assert str(from_frame.value).replace(name, str(path)) == str(from_file.value)
    assert f"row {row}, column" in str(from_frame.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_cli_and_the_api_say_the_same_about_a_misspelled_column(tmp_path, teacher):
    path = write_jsonl(tmp_path / "train.jsonl", rows())
    cli = run_minidisc("finetune", "--model", str(teacher), "--train-file", str(path), "--text-column", "utterance",
                       "--label-column", "intnet", "-o", str(tmp_path / "cli"), cwd=tmp_path)
    with pytest.raises(DataError) as api:
        minidisc.finetune(model=str(teacher), train_file=frame(), text_column="utterance", label_column="intnet",
                          output=tmp_path / "api")
    message = re.sub(r"in-memory DataFrame \([0-9a-f]{16}\)", str(path), str(api.value))
    assert cli.returncode == 2 and cli.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert "did you mean 'intent'?" in message
    assert not (tmp_path / "cli").exists() and not (tmp_path / "api").exists()


def test_options_are_the_command_lines(tmp_path, teacher):
    with pytest.raises(TypeError, match="did you mean 'target_sparsity'"):
        minidisc.compress(target_sparsty=0.9, output=tmp_path / "x")
    with pytest.raises(ConfigError, match="--task sst2 and --train-file exclude each other"):  # typer's usage error
        minidisc.compress(task="sst2", train_file=frame(), output=tmp_path / "x")
    with pytest.raises(DataError, match="does not exist"):  # a path, never sent to the hub
        minidisc.finetune(dataset="./no/such/folder", output=tmp_path / "x")
    with pytest.raises(ConfigError, match="invalid configuration in the config dict: lamda: Extra inputs"):
        minidisc.compress(config={"lamda": 0.2}, output=tmp_path / "x")  # a YAML config's content
    with pytest.raises(ConfigError, match="lam"):  # pydantic's, as on the command line
        minidisc.compress(train_file=frame(), lam=float("inf"), output=tmp_path / "x", **COLUMNS)
    with pytest.raises(ConfigError, match="do not apply to --task lm"):
        minidisc.compress(task="lm", corpus="text.txt", train_file=frame(), output=tmp_path / "x")
    for command in (minidisc.sparsify, minidisc.distill, minidisc.takd, minidisc.maxidisc, minidisc.compare):
        own = {"sparsify": {"teacher": str(teacher)}, "distill": {"sparsity": 0.5}}.get(command.__name__, {})
        with pytest.raises(DataError, match="column 'intnet': no such column .did you mean 'intent'"):
            command(train_file=frame(), text_column="utterance", label_column="intnet", output=tmp_path / "x", **own)
    assert not (tmp_path / "x").exists()


# --- run folders ---------------------------------------------------------------------------


def test_resume_other_data_and_overwrite(tmp_path, teacher):
    out = tmp_path / "run"
    kwargs = {"model": str(teacher), "output": out, **COLUMNS, **TINY}
    first = minidisc.finetune(train_file=frame(), **kwargs)
    created = read_json(out / "manifest.json")["created"]
    again = minidisc.finetune(train_file=frame(), **kwargs)  # the same rows: resumed, nothing trained
    assert again.metrics == first.metrics and read_json(out / "manifest.json")["created"] == created
    other = frame()
    other.loc[4, "utterance"] = "a different sentence"
    with pytest.raises(RunExistsError, match="different configuration; pass --overwrite"):
        minidisc.finetune(train_file=other, **kwargs)
    replaced = minidisc.finetune(train_file=other, overwrite=True, **kwargs)
    assert replaced.details["data"]["custom"]["train_file"] != first.details["data"]["custom"]["train_file"]


def test_a_loaded_model_as_teacher(tmp_path, teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from minidisc.tasks.memory import _REGISTRY

    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    out = tmp_path / "run"
    kwargs = {"teacher": model, "tokenizer": tokenizer, "train_file": frame(), "target_sparsity": 0.5,
              "truncation": 0.5, "grid": "0,0.5", "iterations": 1, "output": out, **COLUMNS, **TINY}
    result = minidisc.compress(**kwargs)
    saved = [p for p in (out / "inputs").iterdir() if not p.name.startswith(".")]
    assert len(saved) == 1 and (saved[0] / "model.safetensors").is_file()
    assert read_json(out / "manifest.json")["config"]["teacher"] == str(saved[0])
    assert result.student == out / "student" and result.metrics["student"]["main"] >= 0
    assert result.cost["total"]["train_flops"] > 0 and result.report == out / "report.md"
    assert read_json(out / "student" / "config.json")["id2label"] == {"0": "meh", "1": "neg", "2": "pos"}
    assert not _REGISTRY  # the in-memory data are released after the run

    assert minidisc.compress(**kwargs).metrics == result.metrics  # the same model resumes
    import torch

    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    with pytest.raises(RunExistsError, match="different configuration"):  # another model: another run
        minidisc.compress(**kwargs)
    assert [p.name for p in (out / "inputs").iterdir() if not p.name.startswith(".")] == [saved[0].name]
    minidisc.compress(**kwargs, overwrite=True)
    now = [p for p in (out / "inputs").iterdir() if not p.name.startswith(".")]
    assert len(now) == 1 and now[0] != saved[0]  # the replaced run's model is gone
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        minidisc.compress(teacher=model, train_file=frame(), output=tmp_path / "y", **COLUMNS)


def test_glue_tasks_of_the_schedules_work_from_python(tmp_path, teacher):
    data_dir = write_tiny_sst2(tmp_path / "glue")
    result = minidisc.distill(teacher=str(teacher), task="sst2", data_dir=data_dir, sparsity=0.5, grid=[0, 0.5],
                              epochs=1, batch_size=8, max_length=16, importance_samples=16, output=tmp_path / "kd")
    assert result.command == "distill" and result.assistants == ()
    assert set(result.metrics) >= {"teacher", "student"} and result.cost["total"]["train_flops"] > 0
    assert (result.student / "config.json").is_file()
    assert minidisc.read_result(tmp_path / "kd") == result

    tuned = write_tiny_bert(tmp_path / "tuned", trained_head=True)
    mapped = minidisc.sparsify(teacher=str(tuned), task="sst2", data_dir=data_dir, grid="0,0.5", importance_samples=16,
                               output=tmp_path / "sparse")
    assert mapped.command == "sparsify" and (mapped.student / "config.json").is_file()
    assert mapped.details["levels"] and mapped.details["importance"]["flops"] > 0 and mapped.cost is not None


def test_a_decoder_on_text_from_python(tmp_path):
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=2)
    write_corpus(tmp_path / "train.txt", lines=80)
    result = minidisc.compress(task="lm", teacher=str(tmp_path / "teacher"), corpus=str(tmp_path / "train.txt"),
                               block_size=16, selection_blocks=4, calibration_blocks=4, grid="0,0.5", truncation=0.5,
                               target_sparsity=0.5, budget_tokens=64, batch_size=4, output=tmp_path / "lm")
    assert set(result.metrics) >= {"teacher", "student"} and result.metrics["student"]["perplexity"] > 0
    assert (result.student / "config.json").is_file() and result.report == tmp_path / "lm" / "report.md"
    assert result.cost["per_stage"]["iter1"]["train_flops"] > 0


# --- the documentation ---------------------------------------------------------------------


def test_the_worked_example_of_the_docs_runs(tmp_path):
    """The first Python block of docs/python-api.md, as it stands, in a fresh process."""
    text = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "assistants:" in done.stdout and "student dev:" in done.stdout
    result = minidisc.read_result(tmp_path / "runs" / "intents")
    assert read_json(result.student / "config.json")["id2label"] == {"0": "alarm", "1": "timer", "2": "weather"}
