#!/usr/bin/env python3
"""Python's process pools on this machine, beside `polycephaly bench --only pool_`.

What issue 12 compares the drone pool with (stdlib only; numpy rows only when
numpy is installed):

- multiprocessing.Pool.apply of an empty task (round trip, median);
- multiprocessing.Pool.apply of sum over a 1,000,000-element list (and over a
  numpy array of 1,000,000 int64, if numpy is there), built once;
- multiprocessing.Pool.map of 100,000 tiny tasks (tasks per second);
- concurrent.futures.ProcessPoolExecutor.submit of an empty task (round trip).

Pools have one worker per CPU (their default), as the drone pool's map row;
the pool is started and warmed up before anything is timed.

    python3 scripts/python_pool.py [--quick] [--json FILE]
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import time

try:
    import numpy
except ImportError:  # the numpy row is skipped
    numpy = None


def empty(x):
    """The empty task: returns its input."""
    return x


def tiny(x):
    """A tiny task: its input plus one (the drone pool's TINY)."""
    return x + 1


def total(xs):
    """The sum of a list or an array, in the worker."""
    return int(xs.sum()) if numpy is not None and isinstance(xs, numpy.ndarray) else sum(xs)


def timed(fn, warmup, samples):
    """Seconds per call of fn(), one per timed sample, after warmup calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def check(got, want, what):
    if got != want:
        raise SystemExit(f"{what}: got {got!r}, want {want!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    q = args.quick
    procs = os.cpu_count() or 1
    rows = []  # (name, what, median, p99, unit)

    def latency(name, what, secs):
        us = sorted(s * 1e6 for s in secs)
        p99 = us[min(len(us) - 1, max(0, -(-99 * len(us) // 100) - 1))]
        rows.append((name, what, statistics.median(us), p99, "us"))

    with multiprocessing.Pool() as pool:
        pool.map(empty, range(procs * 4))  # every worker started

        latency(
            "mp_apply_empty",
            "Pool.apply(empty, (1,))",
            timed(lambda: check(pool.apply(empty, (1,)), 1, "empty"), 100, 500 if q else 5000),
        )

        n = 1_000_000
        data = list(range(1, n + 1))
        want = n * (n + 1) // 2
        latency(
            "mp_apply_sum_list_1000000",
            "Pool.apply(sum, (list of 10^6 int,))",
            timed(lambda: check(pool.apply(total, (data,)), want, "sum"), 2, 5 if q else 30),
        )
        if numpy is not None:
            arr = numpy.arange(1, n + 1, dtype=numpy.int64)
            latency(
                "mp_apply_sum_numpy_1000000",
                "Pool.apply(sum, (int64 array of 10^6,))",
                timed(lambda: check(pool.apply(total, (arr,)), want, "sum"), 2, 5 if q else 30),
            )
        else:
            rows.append(("mp_apply_sum_numpy_1000000", "numpy is not installed: skipped", None, None, ""))

        items = list(range(100_000))
        mapped = [x + 1 for x in items]
        secs = timed(lambda: check(pool.map(tiny, items), mapped, "map"), 1, 3 if q else 10)
        rates = sorted(len(items) / s for s in secs)
        rows.append(("mp_map_tiny_throughput", "Pool.map(tiny, 10^5 items)",
                     statistics.median(rates), rates[0], "task/s"))

    with concurrent.futures.ProcessPoolExecutor() as ex:
        list(ex.map(empty, range(procs * 4)))
        latency(
            "ppe_submit_empty",
            "ProcessPoolExecutor.submit(empty, 1)",
            timed(lambda: check(ex.submit(empty, 1).result(), 1, "empty"), 100, 500 if q else 5000),
        )

    print(f"Python {platform.python_version()} | {procs} CPUs | start method "
          f"{multiprocessing.get_start_method()} | {procs} workers per pool"
          f"{' | --quick' if q else ''}")
    print(f"{'name':<28} {'what':<42} {'median':>12} {'worst 1 %':>12}  unit")
    for name, what, med, p99, unit in rows:
        if med is None:
            print(f"{name:<28} {what}")
        elif unit == "task/s":
            print(f"{name:<28} {what:<42} {med / 1e3:>10.1f} k {p99 / 1e3:>10.1f} k  {unit}")
        else:
            print(f"{name:<28} {what:<42} {med:>12.1f} {p99:>12.1f}  {unit}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({name: {"median": med, "p99": p99, "unit": unit, "what": what}
                       for name, what, med, p99, unit in rows if med is not None}, f, indent=2)


if __name__ == "__main__":
    main()
