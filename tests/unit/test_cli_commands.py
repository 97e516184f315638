"""The command line: every listed command exists and has --help; ``minidisc sparsify``
on a tiny BERT writes a reordered model and a nested sparsity map, resumes, and refuses
to replace what it should not."""

from __future__ import annotations

import itertools

import pytest
import typer
from typer.testing import CliRunner

from minidisc.cli import _COMMAND_MODULES, app, register_commands
from minidisc.errors import RunExistsError
from minidisc.fileio import read_json
from tests.helpers import write_tiny_bert, write_tiny_sst2

runner = CliRunner()


@pytest.mark.parametrize("command", _COMMAND_MODULES)
def test_every_listed_command_has_help(command):
    name = command.replace("_", "-")  # module evaluate_lm holds command evaluate-lm
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and name in result.output


def test_a_missing_command_module_is_an_import_error():
    with pytest.raises(ImportError, match="no_such_command"):
        register_commands(typer.Typer(), ("no_such_command",))


@pytest.fixture(scope="module")
def sparsified(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparsify")
    teacher, glue = write_tiny_bert(root / "teacher", trained_head=True), write_tiny_sst2(root / "glue")
    args = ["sparsify", "--teacher", str(teacher), "--task", "sst2", "--data-dir", str(glue),
            "--max-length", "16", "--importance-samples", "16", "--batch-size", "8",
            "--grid", "0,0.25,0.5,0.75", "--target-sparsity", "0.9"]
    out = root / "out"
    result = runner.invoke(app, [*args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    return root, teacher, glue, out, args


def test_sparsify_writes_a_nested_map_and_a_reordered_model(sparsified):
    from minidisc.elastic import Importance
    from minidisc.elastic.spec import SubnetSpec

    _, teacher, _, out, _ = sparsified
    raw = read_json(out / "sparsity_map.json")
    specs = {float(k): SubnetSpec.from_dict(v) for k, v in raw.items()}
    assert sorted(specs) == [0.0, 0.25, 0.5, 0.75, 0.9]  # the grid and the target
    assert specs[0.0].heads == (4, 4) and specs[0.0].neurons == (64, 64)  # sparsity 0: the whole teacher
    for dense, sparse in itertools.pairwise(sorted(specs)):
        assert specs[sparse].fits_in(specs[dense]), (dense, sparse)
        assert specs[sparse].total_neurons() < specs[dense].total_neurons()

    importance = Importance.load(out / "importance.safetensors")
    assert importance.normalized and tuple(importance.heads.shape) == (2, 4)
    # reordered: every layer's scores descend, so a prefix keeps the most important units
    assert (importance.heads.diff(dim=1) <= 1e-7).all() and (importance.neurons.diff(dim=1) <= 1e-7).all()
    assert read_json(out / "sparsify.json")["levels"] == sorted(specs)
    _assert_same_outputs(teacher, out / "model")


def _assert_same_outputs(teacher, reordered) -> None:
    """Reordering heads and neurons leaves the model's outputs unchanged."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reordered)
    batch = tokenizer(["a good film", "an awful dull film number 3"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = AutoModelForSequenceClassification.from_pretrained(teacher).eval()(**batch).logits
        after = AutoModelForSequenceClassification.from_pretrained(reordered).eval()(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_sparsify_resumes_and_refuses_to_replace_without_overwrite(sparsified):
    _, _, _, out, args = sparsified
    before = (out / "sparsity_map.json").stat().st_mtime_ns
    result = runner.invoke(app, [*args, "--output", str(out)])  # the same command: a finished run, kept
    assert result.exit_code == 0, result.output
    assert (out / "sparsity_map.json").stat().st_mtime_ns == before
    result = runner.invoke(app, [*args, "--grid", "0.5", "--output", str(out)])  # another one: refused
    assert isinstance(result.exception, RunExistsError) and "--overwrite" in str(result.exception)
    assert (out / "sparsity_map.json").stat().st_mtime_ns == before

    result = runner.invoke(app, [*args, "--grid", "0.5", "--output", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(read_json(out / "sparsity_map.json")) == ["0.5", "0.9"]


def test_sparsify_never_deletes_a_foreign_folder(sparsified):
    root, _, _, _, args = sparsified
    foreign = root / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    result = runner.invoke(app, [*args, "--output", str(foreign), "--overwrite"])
    assert isinstance(result.exception, RunExistsError) and "not a minidisc run" in str(result.exception)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_sparsify_refuses_a_teacher_whose_head_was_never_trained(sparsified):
    """Importance is the gradient of the task loss through the head: with a head as
    initialised (here: saved straight after initialisation) or absent (the packaged
    sentence encoder has no classifier) the scores are random, so sparsify refuses,
    unless --allow-untrained-head, which sparsify.json records."""
    from minidisc.errors import ModelError

    root, _, _, _, args = sparsified
    fresh = write_tiny_bert(root / "fresh-head")
    args = [a if a != str(sparsified[1]) else str(fresh) for a in args]
    result = runner.invoke(app, [*args, "--output", str(root / "refused")])
    assert isinstance(result.exception, ModelError), result.output
    assert "never trained" in str(result.exception) and "--allow-untrained-head" in str(result.exception)
    assert not (root / "refused" / "sparsity_map.json").exists()  # a run folder with no finished stage

    result = runner.invoke(app, [*args, "--output", str(root / "allowed"), "--allow-untrained-head"])
    assert result.exit_code == 0, result.output
    assert "bias" in read_json(root / "allowed" / "sparsify.json")["untrained_head"]
    assert read_json(sparsified[3] / "sparsify.json")["untrained_head"] is None


def test_sparsify_refuses_a_teacher_without_a_task_head(tmp_path):
    from minidisc.errors import ModelError

    glue = write_tiny_sst2(tmp_path / "glue")
    result = runner.invoke(app, ["sparsify", "--teacher", "packaged", "--task", "sst2", "--data-dir", str(glue),
                                 "--max-length", "16", "--importance-samples", "8", "--output", str(tmp_path / "out")])
    assert isinstance(result.exception, ModelError)
    assert "no sst2 head" in str(result.exception) and "--allow-untrained-head" in str(result.exception)


def test_sparsify_importance_methods_record_their_cost_and_need_no_trained_head(sparsified):
    """--importance activation scores by forward passes only, so a teacher whose head was
    never trained is accepted; sparsify.json records the method and its calibration cost."""
    from minidisc.errors import ConfigError

    root, _, _, _, args = sparsified
    assert read_json(sparsified[3] / "sparsify.json")["importance"]["method"] == "gradient"  # the default
    fresh = write_tiny_bert(root / "fresh-head-activation")
    args = [a if a != str(sparsified[1]) else str(fresh) for a in args]
    result = runner.invoke(app, [*args, "--output", str(root / "activation"), "--importance", "activation"])
    assert result.exit_code == 0, result.output
    cost = read_json(root / "activation" / "sparsify.json")["importance"]
    assert cost["method"] == "activation" and cost["batches"] == 2 and cost["tokens"] > 0
    assert cost["backward_flops"] == 0 and cost["forward_flops"] > 0
    assert "importance: activation, 2 batches" in result.output

    result = runner.invoke(app, [*args, "--output", str(root / "taylor"), "--importance", "taylor"])
    assert isinstance(result.exception, ConfigError) and "activation, gradient, magnitude, random" in str(result.exception)
    assert not (root / "taylor").exists()  # refused before anything is written
