"""A model given in memory from Python, saved into the run folder that uses it.

Commands take a model as a path or hub id; the Python API also takes a loaded
``PreTrainedModel`` (with its tokenizer). It is saved once, atomically, as safetensors
into ``<run>/inputs/<role>-<fingerprint>/`` and the run proceeds as with that path. The
fingerprint (of the config and every weight) is part of the path, so the run's
configuration changes with the model: the same model resumes the run, another one is
refused like any other change (``overwrite`` replaces the run). The folder counts as
part of the run that is about to start there (:func:`minidisc.runfolder.run.inputs_folder`).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from minidisc.fileio import atomic_path, read_json
from minidisc.runfolder.run import INPUTS, INPUTS_MARKER, MANIFEST, check_output, different_run


def model_fingerprint(model: Any) -> str:
    """16 hex digits of the model's class, config and every tensor (name, dtype, shape,
    bytes)."""
    import torch

    digest = hashlib.sha256(f"{type(model).__name__}\n{model.config.to_json_string()}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        # raw bytes: numpy has no bfloat16
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model_input(output: str | Path, model: Any, tokenizer: Any, role: str, *, overwrite: bool) -> Path:
    """Save ``model`` and ``tokenizer`` into ``output/inputs/<role>-<fingerprint>/`` (once:
    an existing copy is reused) and return that folder.

    Nothing is written where the run would be refused anyway: a folder that is not a
    minidisc run, a damaged run without ``overwrite``, or a run of another configuration
    without ``overwrite`` (the command's own error is raised).

    Raises:
        RunExistsError: as above.
    """
    output = Path(output)
    target = output / INPUTS / f"{role}-{model_fingerprint(model)}"
    state = check_output(output, overwrite)
    if state == "run" and not overwrite:
        manifest = read_json(output / MANIFEST)
        if str(target) not in str(manifest.get("config")):  # the run was made with another model
            raise different_run(output, manifest)
    if (target / "config.json").is_file():  # written atomically: complete
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / INPUTS_MARKER).touch()  # first: the folder is the run's inputs, not a foreign file
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def prune_inputs(output: str | Path, keep: Path) -> None:
    """Remove the saved inputs of ``output`` other than ``keep`` (those of a run it replaced)."""
    folder = Path(output) / INPUTS
    for entry in folder.iterdir() if folder.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink() and entry.name != keep.name and not entry.name.startswith("."):
            shutil.rmtree(entry)
