"""Start-up cost of the command line: wall seconds of ``--help`` in a fresh process (prints JSON).

Each command runs ``--repeats`` times in a fresh interpreter (one warm-up run first, not
counted, so the file cache is warm); the output gives, in seconds, the median and the
minimum wall time and the median CPU time (user + system of the child process, which a
busy machine inflates far less than wall time), the number of ``minidisc`` modules and of
all modules loaded, and the heavy third-party packages imported (read from ``sys.modules``
at exit by a ``-c`` wrapper). The commands:

* ``python -m minidisc.cli --help`` (the top-level help; every command module is
  imported, since each registers its command);
* ``python -m minidisc.cli compress --help``.

Times depend on the machine and its load; compare runs made on one machine, close in
time. ``python -X importtime -m minidisc.cli --help`` shows where the time goes.

Run:  python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

#: Packages whose import costs ~0.5-5 s each; none should load for ``--help``.
HEAVY = ("torch", "transformers", "datasets", "matplotlib", "scipy", "accelerate", "sklearn", "pandas")

_WRAPPER = (
    "import runpy, sys, json\n"
    "sys.argv = ['minidisc'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('minidisc.cli', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = %r\n"
    "mods = sorted(sys.modules)\n"
    "print(json.dumps([sorted(h for h in heavy if h in mods), len(mods),\n"
    "                  sum(m.split('.')[0] == 'minidisc' for m in mods)]), file=sys.stderr)\n"
)


def time_command(args: list[str], repeats: int) -> dict:
    """Wall and CPU seconds of ``python -m minidisc.cli *args`` over ``repeats`` fresh
    processes, and what it imported. Raises ``RuntimeError`` when the command fails."""
    command = [sys.executable, "-m", "minidisc.cli", *args]
    times, cpu = [], []
    for i in range(repeats + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
        if i:  # the first run warms the file cache
            times.append(elapsed)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    probe = subprocess.run(
        [sys.executable, "-c", _WRAPPER % (HEAVY,), *args], capture_output=True, text=True, check=True
    )
    heavy, modules, ours = json.loads(probe.stderr.strip().splitlines()[-1])
    return {
        "command": " ".join(["python -m minidisc.cli", *args]),
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "cpu_median_s": round(statistics.median(cpu), 3),
        "runs": len(times),
        "modules": modules,
        "minidisc_modules": ours,
        "heavy_imported": heavy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (default 5)")
    args = parser.parse_args()
    results = [time_command(cmd, args.repeats) for cmd in (["--help"], ["compress", "--help"])]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
