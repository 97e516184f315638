"""Checking a Trainer checkpoint before resuming from it.

A run killed while the Trainer wrote ``checkpoint-N`` (or a disk that corrupted it)
leaves files that ``Trainer.train(resume_from_checkpoint=...)`` fails on deep inside
torch or safetensors. Reading every file first turns that into one sentence that names
the folder to delete; deleting it makes the next run resume from the checkpoint before
it, or restart the stage.
"""

from __future__ import annotations

import json
from pathlib import Path

from minidisc.errors import ModelError


def verify_checkpoint(folder: Path) -> None:
    """Read every file of the Trainer checkpoint ``folder`` as the Trainer will.

    Safetensors files are loaded, ``.pt``/``.pth`` files (optimiser, scheduler, RNG
    states) are unpickled with ``weights_only=True`` under the globals the Trainer
    allows, JSON files are parsed.

    Raises:
        ModelError: a file cannot be read; the message names the folder to delete.
    """
    import torch
    from safetensors.torch import load_file
    from transformers.trainer_pt_utils import safe_globals

    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            if path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix in (".pt", ".pth"):
                with safe_globals():
                    torch.load(path, map_location="cpu", weights_only=True)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        # Whatever the reader raises (SafetensorError, torch's RuntimeError,
        # pickle.UnpicklingError, EOFError, a JSON ValueError, OSError), the file is unusable.
        except Exception as err:
            raise _corrupted(folder, path, err) from err


def _corrupted(folder: Path, path: Path, err: Exception) -> ModelError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ModelError(
        f"the training checkpoint {folder} is corrupted ({path.name}: {reason}); "
        f"delete the folder {folder} and rerun: training resumes from the checkpoint before it, or "
        "restarts this stage if there is none"
    )
