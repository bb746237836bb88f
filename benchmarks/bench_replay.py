"""Replaying recorded cases: cases/s and memory over a long series, against running the same cases.

Run: ``python benchmarks/bench_replay.py [--cases 1000]``

Records each example case once (evidence-only analyst, the embedded default), then replays the
records round-robin ``--cases`` times, deleting each replay's run directory after it is checked.
The baseline is running the same cases afresh the same way (``--baseline`` times), in this process.
Printed: cases/s for both and their ratio, peak RSS, and RSS at every tenth of the series: memory
must stay flat, i.e. the growth per case after the first tenth is ~0 KB.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import okaflow

ROOT = Path(__file__).resolve().parents[1]
CASES = [ROOT / "examples" / "cases" / name for name in ("chest-ct-followup", "brain-mri", "obstetric-ultrasound")]


def rss_kb() -> int:
    """This process's resident set size now, in KB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * (resource.getpagesize() // 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=60, help="fresh runs for the baseline rate")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="okaflow-bench-replay-"))
    try:
        records = [okaflow.run(case, out=work / f"record-{i}").run_dir for i, case in enumerate(CASES)]
        okaflow.replay(records[0], out=work / "warm")  # imports, caches

        start = time.perf_counter()
        for i in range(args.baseline):
            out = work / "fresh"
            okaflow.run(CASES[i % len(CASES)], out=out, force=True)
        fresh_rate = args.baseline / (time.perf_counter() - start)

        samples: list[tuple[int, int]] = []
        step = max(1, args.cases // 10)
        start = time.perf_counter()
        for i in range(args.cases):
            out = work / "replay"
            result = okaflow.replay(records[i % len(records)], out=out, force=True)
            if not result.identical:
                raise SystemExit(f"replay {i} of {records[i % len(records)]} differs: {result.differing}")
            shutil.rmtree(out)
            if (i + 1) % step == 0:
                samples.append((i + 1, rss_kb()))
        replay_rate = args.cases / (time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.cases} replays of {len(CASES)} recorded example cases (each checked byte-identical)")
    print(f"{'':<24}{'cases/s':>9}")
    print(f"{'fresh runs (baseline)':<24}{fresh_rate:>9.2f}")
    print(f"{'replays':<24}{replay_rate:>9.2f}   ratio replay/fresh {replay_rate / fresh_rate:.2f}")
    print(
        f"peak RSS {peak_mb:.0f} MB; RSS after n replays: " + ", ".join(f"{n}: {kb / 1024:.0f} MB" for n, kb in samples)
    )
    if len(samples) >= 2:
        (n0, kb0), (n1, kb1) = samples[0], samples[-1]
        print(f"growth after the first tenth: {(kb1 - kb0) / max(1, n1 - n0):.1f} KB per case (flat ≈ 0)")


if __name__ == "__main__":
    main()
