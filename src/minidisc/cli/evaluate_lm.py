"""``minidisc evaluate-lm MODEL --corpus PATH``: perplexity and bits per byte of a causal LM.

The protocol (context token, sliding windows, what is scored) is documented in
:mod:`minidisc.evaluation.perplexity` and docs/lm.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.options import LowMemory, Precision, apply_low_memory, help_text
from minidisc.errors import ConfigError
from minidisc.fileio import check_writable, write_json
from minidisc.tasks.plaintext import corpus_files


def register(app: typer.Typer) -> None:
    app.command("evaluate-lm", help=help_text(evaluate_lm.__doc__))(evaluate_lm)


def evaluate_lm(
    model: Annotated[
        str,
        typer.Argument(help="A model folder (a compressed decoder student too), a .gguf file, a hub id, or smollm2 (the packaged SmolLM2-135M-Instruct)."),
    ],
    corpus: Annotated[
        list[Path],
        typer.Option("--corpus", help="A UTF-8 text file, or a folder of .txt files (repeatable); Project Gutenberg headers/footers are removed."),
    ],
    block_size: Annotated[int | None, typer.Option(help="Input tokens per window (default 512, at most the model's positions).")] = None,
    stride: Annotated[int | None, typer.Option(help="Tokens between window starts; each window scores only its last STRIDE tokens (default: the block size, disjoint windows).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 4,
    max_tokens: Annotated[int | None, typer.Option(help="Score only the corpus's first N tokens.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the result as JSON to this file.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    precision: Precision = None,
    low_memory: LowMemory = None,
) -> None:
    """Perplexity and bits per byte of a causal LM on plain text.

    Every document (file) is prefixed with the tokenizer's BOS token (EOS when it has none) and all its tokens are scored once. Windows of --block-size input tokens start every --stride tokens; after the first window, each scores only its last --stride tokens, with the tokens before them as context. Prints tokens scored, mean NLL (nats/token), perplexity = exp(mean NLL) and bits per byte = total NLL in bits / UTF-8 bytes of the scored text (comparable across tokenizers).
    """
    # lazy: pulls in torch (~1.2 s CPU); keeps `minidisc --help` fast
    from minidisc.evaluation.perplexity import evaluate_perplexity, format_table, load_causal_lm
    from minidisc.runtime import configure

    corpus_files(corpus)  # missing files stop here, before the model loads
    apply_low_memory(low_memory)
    if output is not None:
        if output.is_dir():
            raise ConfigError(f"--output {output} is a folder; name a JSON file, e.g. {output / 'perplexity.json'}")
        check_writable(output.parent)
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the weight-loading bars too
    configure(precision or "auto")  # an impossible precision stops here, before the model loads
    lm = load_causal_lm(model, block_size)
    bar = _bar(progress)
    result = evaluate_perplexity(
        lm,
        corpus,
        block_size=block_size,
        stride=stride,
        batch_size=batch_size,
        max_tokens=max_tokens,
        progress=bar.update_to if bar is not None else None,
    )
    if bar is not None:
        bar.close()
    typer.echo(format_table(result))
    if output is not None:
        write_json(output, result.to_dict())
        typer.echo(f"wrote {output}")


class _Bar:
    """A tqdm bar over windows, created on the first update (when the total is known)."""

    def __init__(self) -> None:
        self._bar = None

    def update_to(self, done: int, total: int) -> None:
        from transformers.utils.logging import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc="Scoring", unit="window")
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _bar(enabled: bool) -> _Bar | None:
    return _Bar() if enabled else None
