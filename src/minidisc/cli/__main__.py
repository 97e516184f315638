"""``python -m minidisc.cli`` (and ``accelerate launch -m minidisc.cli``)."""

from minidisc.cli import main

main()
