"""Mistakes and broken files give one sentence, not a traceback.

Each case runs the real command line in a fresh process (``python -m minidisc.cli``) and
checks: non-zero exit, no traceback, a last line ``error: ...`` that says what is wrong,
and that nothing was trained first. A full disk, which a test cannot make, is injected
as the OSError the kernel raises (through the Python API and through a fresh process
whose ``safetensors`` writer raises it).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minidisc.cli import app
from tests.helpers import write_tiny_bert, write_tiny_sst2

TINY = ["--max-length", "16", "--epochs", "0.1", "--batch-size", "8"]


def cli(*args: str, cwd: Path, code: str | None = None) -> subprocess.CompletedProcess:
    """``minidisc ARGS`` in a fresh interpreter; ``code`` runs first (e.g. to inject a fault)."""
    if code is None:
        command = [sys.executable, "-m", "minidisc.cli", *args]
    else:  # as `python -m minidisc.cli ARGS`, after `code`
        script = f"{code}\nimport runpy\nrunpy.run_module('minidisc.cli', run_name='__main__', alter_sys=True)"
        command = [sys.executable, "-c", script, *args]
    return subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last
    return last


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    write_tiny_bert(root / "teacher", trained_head=True)
    write_tiny_sst2(root / "glue")
    return root


def assert_nothing_finished(out: Path) -> None:
    """``out`` is absent, or a run folder (config and manifest) with no finished stage, no
    weights and no staging folder left inside."""
    if not out.exists():
        return
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any(e.get("status") == "done" for e in manifest["stages"].values())
    assert not list(out.rglob("*.safetensors")) and not [p for p in out.iterdir() if p.name.startswith(".")]


# --- corrupted weights -----------------------------------------------------------------


def test_corrupted_teacher_weights(files, tmp_path):
    corrupt = shutil.copytree(files / "teacher", tmp_path / "teacher")
    truncate(corrupt / "model.safetensors")
    result = cli("finetune", "--model", str(corrupt), "--data-dir", str(files / "glue"), *TINY,
                 "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(result, str(corrupt), "corrupted or truncated", "replace the file")
    assert_nothing_finished(tmp_path / "out")


def test_corrupted_student_weights(files, tmp_path):
    from minidisc.elastic import SubnetSpec, make_elastic, save_student
    from minidisc.models import ModelSource, load_for_task, load_tokenizer
    from minidisc.tasks import get_task

    source = ModelSource(str(files / "teacher"))
    spec = SubnetSpec((2, 3), (16, 8), sparsity=0.5)
    student = make_elastic(load_for_task(source, get_task("sst2"))).extract(spec)
    save_student(student, tmp_path / "student", spec, tokenizer=load_tokenizer(source))
    truncate(tmp_path / "student" / "model.safetensors")
    result = cli("finetune", "--model", str(tmp_path / "student"), "--data-dir", str(files / "glue"), *TINY,
                 "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(result, "student", "corrupted or truncated")


def test_corrupted_stage_outputs(files, tmp_path):
    """The outputs of a stage (here sparsify's reordered model/ and importance scores)
    read back corrupted: one sentence that says to delete the stage's folder."""
    from minidisc.elastic import Importance
    from minidisc.errors import ModelError

    out = tmp_path / "sparsified"
    result = CliRunner().invoke(app, ["sparsify", "--teacher", str(files / "teacher"), "--data-dir",
                                      str(files / "glue"), "--max-length", "16", "--importance-samples", "8",
                                      "--grid", "0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    truncate(out / "model" / "model.safetensors")
    result = cli("finetune", "--model", str(out / "model"), "--data-dir", str(files / "glue"), *TINY,
                 "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(result, "corrupted or truncated", "delete that stage's folder")
    truncate(out / "importance.safetensors")
    with pytest.raises(ModelError, match="importance.safetensors are corrupted or truncated"):
        Importance.load(out / "importance.safetensors")


def test_corrupted_training_checkpoint_names_the_folder_to_delete(tmp_path):
    from minidisc.config import save_yaml
    from minidisc.pretrain.run import run_pretrain
    from tests.helpers import interrupt_at_step
    from tests.pretrain_helpers import tiny_config, write_corpus, write_teacher

    teacher, corpus = write_teacher(tmp_path / "teacher"), write_corpus(tmp_path / "corpus.txt")
    cfg = tiny_config(teacher, corpus, "scratch", checkpoint_steps=2)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, tmp_path / "run", callbacks=[interrupt_at_step(3)])
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    truncate(checkpoint / "optimizer.pt")
    save_yaml(tmp_path / "cfg.yaml", cfg)
    result = cli("pretrain", "--config", str(tmp_path / "cfg.yaml"), "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(result, f"delete the folder {checkpoint}", "optimizer.pt")


# --- outputs that cannot be written ----------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write into: mode 0555, or for root (whom modes do not
    stop) the immutable attribute."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root
        immutable = subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode == 0
    try:
        (folder / "probe").touch()
    except OSError:
        pass
    else:
        (folder / "probe").unlink()
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


@pytest.mark.parametrize("command", ["finetune", "compress"])
def test_read_only_output_is_refused_before_any_work(files, read_only_dir, command):
    teacher = "--model" if command == "finetune" else "--teacher"
    result = cli(command, teacher, str(files / "teacher"), "--data-dir", str(files / "glue"), *TINY,
                 "-o", str(read_only_dir / "out"), cwd=read_only_dir.parent)
    assert_one_line_error(result, f"cannot write into {read_only_dir}", "choose another --output")


def test_full_disk_is_one_sentence_and_leaves_nothing_behind(files, tmp_path, monkeypatch):
    """ENOSPC while the sparsify stage writes its outputs (Python API)."""
    import safetensors.torch

    from minidisc.cli.sparsify import run_sparsify
    from minidisc.config import DataConfig
    from minidisc.errors import DiskFullError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[1]) if len(args) > 1 else None)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    data = DataConfig(task="sst2", data_dir=str(files / "glue"), max_length=16, importance_samples=8)
    with pytest.raises(DiskFullError, match="no space left on the disk while writing .*free some space"):
        run_sparsify(str(files / "teacher"), data, [0.5], 8, 0, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder beside it
    assert_nothing_finished(tmp_path / "out")


def test_full_disk_in_a_fresh_process(files, tmp_path):
    inject = (
        "import errno, os, safetensors.torch\n"
        "def full(*a, **k): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "safetensors.torch.save_file = full"
    )
    result = cli("sparsify", "--teacher", str(files / "teacher"), "--data-dir", str(files / "glue"),
                 "--max-length", "16", "--importance-samples", "8", "--grid", "0.5", "-o", str(tmp_path / "out"),
                 cwd=tmp_path, code=inject)
    assert_one_line_error(result, "no space left on the disk", "rerun")
    assert_nothing_finished(tmp_path / "out")


# --- bad inputs ------------------------------------------------------------------------


def test_finetune_output_that_is_a_file(files, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = cli("finetune", "--model", str(files / "teacher"), "--data-dir", str(files / "glue"), *TINY,
                 "-o", str(tmp_path / "notes.txt"), cwd=tmp_path)
    assert_one_line_error(result, "notes.txt is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_train_tsv_that_is_a_folder(files, tmp_path):
    glue = shutil.copytree(files / "glue", tmp_path / "glue")
    (glue / "SST-2" / "train.tsv").unlink()
    (glue / "SST-2" / "train.tsv").mkdir()
    result = cli("finetune", "--model", str(files / "teacher"), "--data-dir", str(glue), *TINY,
                 "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(result, "train.tsv is not a file but a folder")


def test_binary_runs_file_in_scaling_fit(tmp_path):
    (tmp_path / "runs.jsonl").write_bytes(bytes(range(256)) * 8)
    result = cli("scaling", "fit", "--runs", str(tmp_path / "runs.jsonl"), cwd=tmp_path)
    assert_one_line_error(result, "runs.jsonl:2: not UTF-8 text", "JSON Lines or CSV")  # byte 10 ends line 1


@pytest.mark.parametrize("lam", ["inf", "nan", "-1"])
def test_lambda_must_be_a_finite_non_negative_number(files, tmp_path, lam):
    result = cli("compress", "--teacher", str(files / "teacher"), "--data-dir", str(files / "glue"),
                 f"--lam={lam}", *TINY, "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(result, "lam")
    assert not (tmp_path / "run").exists()  # refused by the config, before any stage


@pytest.mark.parametrize("name", ["./no-such-teacher", "runs/typo/teacher", "~/no-such-teacher-dir"])
def test_missing_local_teacher_is_not_sent_to_the_hub(files, tmp_path, name):
    (tmp_path / "runs").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    result = subprocess.run(
        [sys.executable, "-m", "minidisc.cli", "finetune", "--model", name, "--data-dir", str(files / "glue"),
         "-o", str(tmp_path / "out")], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, f"model folder {name} does not exist", "hub id")
