"""``python -m minidisc.cli`` (and ``accelerate launch -m minidisc.cli``)."""

import sys

from minidisc.cli import main


def end_process_group() -> None:
    """Leave torch's process group, if a launch made one, before the interpreter exits
    (torch warns, and gloo may abort, when it is torn down at exit instead)."""
    dist = sys.modules.get("torch.distributed")  # never import torch just for this
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


try:
    main()
finally:
    end_process_group()
