#!/usr/bin/env python3
"""The Python baselines of `memspace bench`: appends per second with Python's own tools.

`memspace bench` carries this file inside the program and runs it from a temporary copy; it
also runs on its own: `python3 crates/memspace-bench/bench_baselines.py [--quick]`. The Python
package carries it too, as the module `memspace._baselines`, for `python -m memspace.bench`:
it imports nothing but the standard library.

Prints one JSON object:
  threads_lock_append   4 threads appending to one list under a threading.Lock
  manager_list_append   4 processes appending to a Manager().list()
  shareable_list_write  4 processes writing a ShareableList under a multiprocessing.Lock
  manager_list_set      4 processes each replacing items of a Manager().list() of 1000
  manager_list_pop      4 processes each popping items off one Manager().list()
  array_locked_add      4 processes each adding 1 to its own element of one
                        multiprocessing.Array("q") under the array's lock (`arr[i] += 1`
                        is a read and a write, each taking the lock: the lock makes the pair
                        atomic, as SharedArray's fetch_add is)
"""

import json
import multiprocessing
import sys
import threading
import time
from multiprocessing import Array, Manager, Process
from multiprocessing.shared_memory import ShareableList

WORKERS = 4


def run(procs):
    """Starts the processes, waits for them all; returns the seconds it took."""
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    for p in procs:
        if p.exitcode != 0:
            raise RuntimeError(f"a benchmark worker exited with code {p.exitcode}")
    return elapsed


def threads_lock_append(n):
    nums, lock = [], threading.Lock()

    def work():
        for i in range(n):
            with lock:
                nums.append(i)

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert len(nums) == WORKERS * n
    return WORKERS * n / elapsed


def _manager_work(nums, n):
    for i in range(n):
        nums.append(i)


def manager_list_append(n):
    with Manager() as manager:
        nums = manager.list()
        procs = [Process(target=_manager_work, args=(nums, n)) for _ in range(WORKERS)]
        elapsed = run(procs)
        assert len(nums) == WORKERS * n
    return WORKERS * n / elapsed


def _manager_set_work(nums, n, w):
    for i in range(n):
        nums[(i * 7 + w * 251) % 1000] = i


def manager_list_set(n):
    with Manager() as manager:
        nums = manager.list([0] * 1000)
        procs = [Process(target=_manager_set_work, args=(nums, n, w)) for w in range(WORKERS)]
        elapsed = run(procs)
        assert len(nums) == 1000
    return WORKERS * n / elapsed


def _manager_pop_work(nums, n):
    for _ in range(n):
        nums.pop()


def manager_list_pop(n):
    with Manager() as manager:
        nums = manager.list(range(WORKERS * n))
        procs = [Process(target=_manager_pop_work, args=(nums, n)) for _ in range(WORKERS)]
        elapsed = run(procs)
        assert len(nums) == 0
    return WORKERS * n / elapsed


def _shareable_work(name, lock, n, slot):
    shared = ShareableList(name=name)
    for i in range(n):
        with lock:
            shared[slot] = i
    shared.shm.close()


def shareable_list_write(n, ctx=multiprocessing):
    """Processes and the lock come from `ctx`: a context of `multiprocessing`, or the module
    itself for the default start method."""
    shared = ShareableList([0] * WORKERS)
    lock = ctx.Lock()
    try:
        procs = [
            ctx.Process(target=_shareable_work, args=(shared.shm.name, lock, n, w))
            for w in range(WORKERS)
        ]
        elapsed = run(procs)
        assert list(shared) == [n - 1] * WORKERS
    finally:
        shared.shm.close()
        shared.shm.unlink()
    return WORKERS * n / elapsed


def _array_work(arr, n, slot):
    for _ in range(n):
        with arr.get_lock():
            arr[slot] += 1


def array_locked_add(n):
    arr = Array("q", WORKERS)
    procs = [Process(target=_array_work, args=(arr, n, w)) for w in range(WORKERS)]
    elapsed = run(procs)
    assert list(arr) == [n] * WORKERS
    return WORKERS * n / elapsed


def main():
    quick = "--quick" in sys.argv
    scale = 1 if quick else 4
    print(
        json.dumps(
            {
                "threads_lock_append": threads_lock_append(50_000 * scale),
                "manager_list_append": manager_list_append(2_000 * scale),
                "shareable_list_write": shareable_list_write(20_000 * scale),
                "manager_list_set": manager_list_set(2_000 * scale),
                "manager_list_pop": manager_list_pop(2_000 * scale),
                "array_locked_add": array_locked_add(20_000 * scale),
            }
        )
    )


if __name__ == "__main__":
    main()
