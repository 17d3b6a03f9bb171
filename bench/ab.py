"""Paired comparison of the web-lead intake of two revisions: `python -m bench.ab REV_A REV_B
[PAIRS]` (a revision is anything `git archive` takes; WT is the working tree's tracked files).

On this shared machine one server's rate moves by ±25 % from run to run, so single runs
cannot see a 5 % change. Here the two revisions take turns, A B B A then B A A B..., and
what is compared is each pair's ratio: the machine's slow and fast moments hit both sides.
Its standard deviation over 8 ratios is about 0.06-0.10. `SHARE=0.3` sends that share of
repeat customers, as the second run of `make bench` does. For development, not `make bench`:
the figures of record are bench.intake's."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import intake

HERE = intake.ROOT


def checkout(rev: str, into: Path) -> Path:
    """The revision's files in `into`, with this checkout's virtual environment."""
    into.mkdir()
    if rev == "WT":
        files = subprocess.run(["git", "ls-files", "-z"], cwd=HERE, check=True, capture_output=True).stdout
        tar = subprocess.run(["tar", "-c", "--null", "-T", "-"], cwd=HERE, input=files, check=True, capture_output=True)
    else:
        tar = subprocess.run(["git", "archive", rev], cwd=HERE, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar.stdout, check=True)
    (into / ".venv").symlink_to(HERE / ".venv")
    return into


async def one(tree: Path, tmp: Path, n: int, share: float, total: int) -> intake.Served:
    intake.ROOT = tree  # the server runs that tree's code (spawn's cwd and PYTHONPATH)
    port = intake.free_port()
    args = intake.acd_args(tmp, tmp / f"{tree.name}{n}.db", port)
    return await intake.serve_and_hammer(args, tmp / "acd.log", port, total, 64, share)


async def compare(rev_a: str, rev_b: str, pairs: int) -> None:
    share = float(os.environ.get("SHARE", "0"))
    total = int(os.environ.get("TOTAL", "6000"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        a, b = checkout(rev_a, tmp / "a"), checkout(rev_b, tmp / "b")
        runs: dict[Path, list[intake.Served]] = {a: [], b: []}
        for p in range(pairs):
            for tree in (a, b, b, a) if p % 2 == 0 else (b, a, a, b):
                served = await one(tree, tmp, sum(map(len, runs.values())), share, total)
                runs[tree].append(served)
                name = rev_a if tree is a else rev_b
                print(f"{name:>12} {served.rate:7.0f}/s errors {served.errors} cpu {served.cpu_us:.0f} µs", flush=True)
    ratios = [y.rate / x.rate for x, y in zip(runs[a], runs[b], strict=True)]
    print(f"B/A {statistics.mean(ratios):.3f} (sd {statistics.stdev(ratios):.3f}, {len(ratios)} ratios)")
    # The rate follows the CPU time per lead, server and client together (they share the
    # machine's cores); this says which side of the rate moved. Paired the same way.
    both = [(y.cpu_us + y.client_cpu_us) / (x.cpu_us + x.client_cpu_us) for x, y in zip(runs[a], runs[b], strict=True)]
    print(f"CPU per lead B/A {statistics.mean(both):.3f} (sd {statistics.stdev(both):.3f}), server and client together")
    for rev, tree in ((rev_a, a), (rev_b, b)):
        cpu = statistics.mean(s.cpu_us for s in runs[tree])
        loop = statistics.mean(s.loop_cpu_us for s in runs[tree])
        print(f"{rev}: server CPU per lead {cpu:.0f} µs (loop {loop:.0f})")


if __name__ == "__main__":
    asyncio.run(compare(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4))
