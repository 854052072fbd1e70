"""``python -m memspace.bench [--quick] [--json]``: memspace's objects beside Python's own
tools, measured in one run on the same machine.

Each row is one scenario timed twice, on memspace and on its baseline, and the ratio of the two
rates (above 1: memspace is faster):

  list_append    4 processes appending ints to one ``SharedList``; baselines: a
                 ``Manager().list()``, and a ``ShareableList`` each process writes its own
                 item of under one ``multiprocessing.Lock``
  dict_set       4 processes setting keys of one ``SharedDict``; baseline ``Manager().dict()``
  dict_get       4 processes reading the keys of a filled ``SharedDict``; baseline
                 ``Manager().dict()``
  queue_put_get  a producer process puts ints, the parent gets them; baselines
                 ``multiprocessing.Queue`` and ``faster_fifo.Queue`` (only if it imports)
  pod_queue_put_get  the same through a ``PodQueue("q", 4096)``; baseline
                 ``multiprocessing.Queue``
  lock_uncontended  ``acquire`` + ``release`` in one process; baseline
                 ``multiprocessing.Lock``

Processes start with the ``fork`` start method on both sides (``spawn`` where ``fork`` is not
available). The timed span of a multi-process row runs from the first ``Process.start()`` to
the last ``join()``, so process starts are included, the same way on both sides; a
``Manager``'s own server starts before the clock. Each side does enough operations to run for
a comparable time, so the counts differ between the two sides but each rate is operations per
second of that span. The full mode runs each comparison 3 times, alternating memspace and its
baseline, and reports the medians; ``--quick`` runs each once, with smaller counts (a few
seconds on 2 cores). ``--json`` prints a JSON array of rows instead of the table.
"""

import json
import multiprocessing
import statistics
import sys
import time

import memspace

from ._baselines import WORKERS, run, shareable_list_write

_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
_CTX = multiprocessing.get_context(_METHOD)


def _append_work(nums, n):
    for i in range(n):
        nums.append(i)


def list_append_memspace(n):
    nums = memspace.SharedList()
    elapsed = run([_CTX.Process(target=_append_work, args=(nums, n)) for _ in range(WORKERS)])
    assert len(nums) == WORKERS * n
    return WORKERS * n / elapsed


def list_append_manager(n):
    with _CTX.Manager() as manager:
        nums = manager.list()
        elapsed = run([_CTX.Process(target=_append_work, args=(nums, n)) for _ in range(WORKERS)])
        assert len(nums) == WORKERS * n
    return WORKERS * n / elapsed


def list_write_shareable(n):
    return shareable_list_write(n, _CTX)


def _dict_set_work(d, n, w):
    for i in range(n):
        d[w * n + i] = i


def _dict_get_work(d, n, w):
    for i in range(n):
        d[(w * 7919 + i) % n]


def _dict_set(d, n):
    elapsed = run([_CTX.Process(target=_dict_set_work, args=(d, n, w)) for w in range(WORKERS)])
    assert len(d) == WORKERS * n
    return WORKERS * n / elapsed


def _dict_get(d, n):
    elapsed = run([_CTX.Process(target=_dict_get_work, args=(d, n, w)) for w in range(WORKERS)])
    return WORKERS * n / elapsed


def dict_set_memspace(n):
    return _dict_set(memspace.SharedDict(), n)


def dict_set_manager(n):
    with _CTX.Manager() as manager:
        return _dict_set(manager.dict(), n)


def dict_get_memspace(n):
    return _dict_get(memspace.SharedDict({i: i for i in range(n)}), n)


def dict_get_manager(n):
    with _CTX.Manager() as manager:
        return _dict_get(manager.dict({i: i for i in range(n)}), n)


def _produce(queue, n):
    for i in range(n):
        queue.put(i)


def _queue_put_get(queue, n):
    producer = _CTX.Process(target=_produce, args=(queue, n))
    start = time.perf_counter()
    producer.start()
    total = 0
    for _ in range(n):
        total += queue.get()
    producer.join()
    elapsed = time.perf_counter() - start
    if producer.exitcode != 0:
        raise RuntimeError(f"the queue's producer exited with code {producer.exitcode}")
    assert total == n * (n - 1) // 2
    return n / elapsed


def queue_memspace(n):
    return _queue_put_get(memspace.Queue(), n)


def pod_queue_memspace(n):
    return _queue_put_get(memspace.PodQueue("q", 4096), n)


def queue_multiprocessing(n):
    queue = _CTX.Queue()
    try:
        return _queue_put_get(queue, n)
    finally:
        queue.close()
        queue.join_thread()


def queue_faster_fifo(n):
    import faster_fifo

    return _queue_put_get(faster_fifo.Queue(), n)


def _lock_loop(lock, n):
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return n / (time.perf_counter() - start)


def lock_memspace(n):
    return _lock_loop(memspace.Lock(), n)


def lock_multiprocessing(n):
    return _lock_loop(_CTX.Lock(), n)


def _has_faster_fifo():
    try:
        import faster_fifo  # noqa: F401
    except ImportError:
        return False
    return True


def comparisons(quick):
    """The rows to measure: (scenario, memspace function and count, baseline name, baseline
    function and count, unit, target ratio or None)."""
    s = 1 if quick else 4
    rows = [
        ("list_append", list_append_memspace, 200_000 * s, "Manager().list()",
         list_append_manager, 1_500 * s, "appends/s", 50),
        ("list_append", list_append_memspace, 200_000 * s, "ShareableList + mp.Lock",
         list_write_shareable, 50_000 * s, "appends/s", None),
        ("dict_set", dict_set_memspace, 100_000 * s, "Manager().dict()",
         dict_set_manager, 1_500 * s, "sets/s", 50),
        ("dict_get", dict_get_memspace, 200_000 * s, "Manager().dict()",
         dict_get_manager, 1_500 * s, "gets/s", 50),
        ("queue_put_get", queue_memspace, 200_000 * s, "multiprocessing.Queue",
         queue_multiprocessing, 50_000 * s, "items/s", 3),
        ("pod_queue_put_get", pod_queue_memspace, 200_000 * s, "multiprocessing.Queue",
         queue_multiprocessing, 50_000 * s, "items/s", None),
        ("lock_uncontended", lock_memspace, 1_000_000 * s, "multiprocessing.Lock",
         lock_multiprocessing, 1_000_000 * s, "acquire+release/s", 0.8),
    ]
    if _has_faster_fifo():
        rows.insert(5, ("queue_put_get", queue_memspace, 200_000 * s, "faster_fifo.Queue",
                        queue_faster_fifo, 200_000 * s, "items/s", None))
    return rows


def measure(quick):
    """Runs every comparison; returns a list of result dicts."""
    runs = 1 if quick else 3
    results = []
    for scenario, ours, n_ours, baseline, theirs, n_theirs, unit, target in comparisons(quick):
        mine, base = [], []
        for _ in range(runs):
            mine.append(ours(n_ours))
            base.append(theirs(n_theirs))
        rate, base_rate = statistics.median(mine), statistics.median(base)
        results.append(
            {
                "scenario": scenario,
                "baseline": baseline,
                "memspace": rate,
                "baseline_rate": base_rate,
                "unit": unit,
                "ratio": rate / base_rate,
                "target": target,
                "start_method": _METHOD,
            }
        )
    return results


def _si(x):
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if x >= scale:
            return f"{x / scale:.2f}{suffix}"
    return f"{x:.0f}"


def table(results):
    """The results as a Markdown table."""
    lines = [
        "| scenario | baseline | memspace | baseline | unit | ratio | target |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in results:
        target = r["target"]
        verdict = "" if target is None else (
            f"≥ {target}x: {'met' if r['ratio'] >= target else 'not met'}"
        )
        lines.append(
            f"| `{r['scenario']}` | `{r['baseline']}` | {_si(r['memspace'])} | "
            f"{_si(r['baseline_rate'])} | {r['unit']} | {r['ratio']:.2f}x | {verdict} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    unknown = [a for a in args if a not in ("--quick", "--json")]
    if unknown:
        sys.stderr.write(
            f"python -m memspace.bench: unknown argument {unknown[0]!r}; "
            "usage: python -m memspace.bench [--quick] [--json]\n"
        )
        return 2
    results = measure("--quick" in args)
    if "--json" in args:
        print(json.dumps(results, indent=1))
    else:
        print(f"start method: {_METHOD}; process starts are inside the timed span on both sides")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
