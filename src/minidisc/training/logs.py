"""Training logs of a stage: TensorBoard events and ``metrics.jsonl``, in ``<stage>/logs/``.

Every training stage writes into its log folder (inside the stage's staging folder, so
the logs arrive with the finished stage and vanish with a failed one):

* TensorBoard event files (the Trainer's own TensorBoard callback, pointed at the log
  folder): ``tensorboard --logdir RUN`` shows every stage of a run;
* ``metrics.jsonl``: one JSON object per log event of the Trainer — ``step``,
  ``epoch`` and what the Trainer logged: ``loss``, ``grad_norm``, ``learning_rate``,
  the dev metrics (``eval_main``, ...), and in sandwich training every candidate's dev
  metrics (``eval_s0.5_main``, ...) with the current selection.

Logs may hold wall times and timestamps; they never feed back into training, so the
weights of two runs stay bit-identical whatever their logs say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

#: Name of the metrics file inside a stage's log folder.
METRICS_FILE = "metrics.jsonl"


class MetricsLogCallback(TrainerCallback):
    """Append every log event of the Trainer to ``path`` as one JSON line (main process).

    A run resumed from a Trainer checkpoint first writes the events the checkpoint
    remembers (``state.log_history``), so the file covers the whole stage.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(_line(event) for event in state.log_history), encoding="utf-8")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        event = {"step": state.global_step, "epoch": state.epoch, **(logs or {})}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(_line(event))


def _line(event: dict[str, Any]) -> str:
    return json.dumps(event, default=_scalar) + "\n"


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def log_callbacks(log_dir: str | Path) -> list[TrainerCallback]:
    """The callbacks writing a stage's logs into ``log_dir``: TensorBoard events and
    :data:`METRICS_FILE`."""
    return [StageTensorBoardCallback(log_dir), MetricsLogCallback(Path(log_dir) / METRICS_FILE)]


class StageTensorBoardCallback(TensorBoardCallback):
    """The Trainer's TensorBoard callback, writing into ``log_dir``.

    The Trainer's ``report_to="tensorboard"`` would put the events under
    ``output_dir/runs/<time>_<host>``: the stage's scratch folder, deleted at its end.
    Log events after training (a stage's final evaluation) are written too, each
    followed by closing the writer, so no writer outlives its stage.
    """

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        self.logging_dir = str(log_dir)  # read when the writer opens
        self._training = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = True
        super().on_train_begin(args, state, control, **kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = False
        super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().on_log(args, state, control, logs=logs, **kwargs)
        if not self._training and self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None
