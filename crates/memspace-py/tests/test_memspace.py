"""The memspace package against real processes: every object passed to
multiprocessing.Process under each start method, the tutorial's program, a lock holder
killed with SIGKILL, and what Rust's `memspace` command reads of a list Python wrote."""

import json
import multiprocessing as mp
import os
import pathlib
import pickle
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import memspace

from conftest import START_METHODS

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "python" / "examples" / "tutorial_processes.py"
REPO = HERE.parents[2]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_seed_example_prints_the_shared_list(method):
    runner = (
        "import multiprocessing, runpy, sys; multiprocessing.set_start_method(sys.argv[1]); "
        "runpy.run_path(sys.argv[2], run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", runner, method, str(EXAMPLE)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "Main Process : [0, 1, 2, 0, 1, 2, 0, 1, 2]", out


def _worker(lock, items, counter, q, jobs, n):
    for i in range(n):
        with lock:
            items.append(i)
        with counter.get_lock():
            counter.value += 1
    q.put(("done", os.getpid(), {"n": n}))
    while True:
        job = jobs.get()
        if job is None:
            jobs.task_done()
            break
        q.put(job * job)
        jobs.task_done()


@pytest.mark.parametrize("method", START_METHODS)
def test_objects_travel_to_processes(method):
    ctx = mp.get_context(method)
    lock, items, counter = memspace.Lock(), memspace.SharedList(), memspace.Value("i", 0)
    q, jobs = memspace.Queue(), memspace.JoinableQueue()
    workers = [ctx.Process(target=_worker, args=(lock, items, counter, q, jobs, 50)) for _ in range(3)]
    for w in workers:
        w.start()
    for j in range(10):
        jobs.put(j)
    for _ in workers:
        jobs.put(None)
    jobs.join()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    got = [q.get(timeout=10) for _ in range(13)]
    assert sorted(g for g in got if isinstance(g, int)) == [j * j for j in range(10)]
    assert sorted(g[1] for g in got if isinstance(g, list)) == sorted(w.pid for w in workers)
    assert len(items) == 150 and sorted(items) == sorted(list(range(50)) * 3)
    assert counter.value == 150
    assert q.empty() and not lock.locked()


def test_shared_list_follows_a_plain_list():
    rng = random.Random(13)
    shared, model = memspace.SharedList(), []
    values = [None, True, False, 0, -1, 2**63 - 1, 2**64 - 1, 2**80, 1.5, "", "x", b"\x00b",
              [1, [2, "3"]], {"k": [None]}, {1: 2}, {3, 4}, (1, 2)]
    for _ in range(2000):
        op = rng.randrange(10)
        v = rng.choice(values)
        stored = list(v) if isinstance(v, tuple) else v
        i = rng.randrange(-len(model) - 2, len(model) + 2) if model or op == 2 else 0
        if op in (0, 1):
            shared.append(v); model.append(stored)
        elif op == 2:
            shared.insert(i, v); model.insert(i, stored)
        elif op == 3 and model:
            j = rng.randrange(-len(model), len(model))
            shared[j] = v; model[j] = stored
        elif op == 4:
            if model:
                j = rng.randrange(-len(model), len(model))
                assert shared.pop(j) == model.pop(j)
            else:
                with pytest.raises(IndexError):
                    shared.pop()
        elif op == 5:
            a, b = sorted(rng.randrange(-len(model) - 1, len(model) + 1) for _ in range(2))
            assert shared[a:b] == model[a:b]
            assert shared[::-1] == model[::-1]
        elif op == 6 and model:
            j = rng.randrange(-len(model), len(model))
            del shared[j]; del model[j]
        elif op == 7:
            shared.extend([v, v]); model.extend([stored, stored])
        elif op == 8:
            if stored in model:
                shared.remove(stored); model.remove(stored)
            else:
                with pytest.raises(ValueError):
                    shared.remove(v)
        elif op == 9:
            with pytest.raises(IndexError):
                shared[len(model)]
        assert len(shared) == len(model)
        assert shared == model
    assert list(shared) == model
    assert pickle.loads(pickle.dumps(shared)) == model


def _memspace_bin():
    found = os.environ.get("MEMSPACE_BIN") or shutil.which("memspace")
    for candidate in (found, REPO / "target" / "debug" / "memspace", REPO / "target" / "release" / "memspace"):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    pytest.skip("no memspace binary: build the CLI (cargo build) or set MEMSPACE_BIN")


def test_rust_reads_what_python_wrote(unique_name):
    binary = _memspace_bin()
    name = unique_name("xlang")
    items = memspace.SharedList.create(name)
    written = [None, True, 7, -3, 2.5, "héllo", [1, "two", [3.0]], {"a": {"b": [None]}}, (4, 5)]
    items.extend(written)
    out = subprocess.run([binary, "list", "get", name], capture_output=True, text=True, check=True).stdout
    try:
        got = json.loads(out)
    except json.JSONDecodeError:
        got = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert got == [[4, 5] if isinstance(w, tuple) else w for w in written], out
    items.unlink()


def _hold_and_wait(lock, ready):
    lock.acquire()
    ready.set()
    time.sleep(600)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_lock_of_a_killed_holder_goes_to_the_next_acquirer(method):
    ctx = mp.get_context(method)
    lock, ready = memspace.Lock(), ctx.Event()
    holder = ctx.Process(target=_hold_and_wait, args=(lock, ready))
    holder.start()
    assert ready.wait(60)
    assert lock.locked() and not lock.acquire(timeout=0.05)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with pytest.raises(memspace.OwnerDied):
        lock.acquire(timeout=30)
    assert lock.locked() and lock.owner_deaths == 1
    lock.mark_consistent()
    lock.release()
    assert lock.acquire(timeout=5)
    lock.release()


def test_a_waiting_acquire_releases_the_gil():
    lock = memspace.Lock()
    lock.acquire()
    result = []
    waiter = threading.Thread(target=lambda: result.append(lock.acquire(timeout=1.0)))
    waiter.start()
    spins = 0
    while waiter.is_alive():
        spins += 1
    waiter.join()
    lock.release()
    assert result == [False]
    assert spins > 1000


@pytest.mark.parametrize("call", ["get", "acquire", "join"])
def test_ctrl_c_interrupts_a_blocked_call(call):
    program = (
        "import memspace, signal, sys\n"
        # As in an interactive Python, whatever SIGINT disposition the test runner has.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "q, lock = memspace.JoinableQueue(), memspace.Lock()\n"
        "q.put(1)\n"
        "if sys.argv[1] == 'join':\n"
        "    q.get()\n"
        "    wait = q.join\n"
        "elif sys.argv[1] == 'get':\n"
        "    q.get()\n"
        "    wait = q.get\n"
        "else:\n"
        "    lock.acquire()\n"
        "    wait = lock.acquire\n"
        "print('waiting', flush=True)\n"
        "try:\n"
        "    wait()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", program, call], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "waiting\n"
    time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert out == "interrupted\n"
    assert child.returncode == 0


def test_queue_follows_multiprocessing_queue():
    q = memspace.Queue(2)
    q.put(1)
    q.put_nowait([1, {"x": b"y"}])
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    assert q.get() == 1 and q.get_nowait() == [1, {"x": b"y"}]
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(ValueError):
        q.task_done()
    q.close()
    with pytest.raises(ValueError):
        q.put(1)

    jq = memspace.JoinableQueue()
    jq.put("a")
    assert jq.get() == "a"
    done = threading.Event()
    threading.Thread(target=lambda: (jq.join(), done.set())).start()
    assert not done.wait(0.1)
    jq.task_done()
    assert done.wait(10)
    with pytest.raises(ValueError):
        jq.task_done()


def test_pod_queue_follows_multiprocessing_queue_for_numbers(unique_name):
    q = memspace.PodQueue("q", 3)
    assert q.capacity == 4 and q.typecode == "q"
    q.put(1)
    q.put_nowait(-2)
    assert q.put_many([3, 4, 5], block=False) == 2, "room for two"
    assert q.full() and q.qsize() == 4
    with pytest.raises(queue.Full):
        q.put_nowait(6)
    with pytest.raises(queue.Full):
        q.put(6, timeout=0.05)
    assert q.get() == 1 and q.get_nowait() == -2
    assert q.get_many(10) == [3, 4]
    assert q.empty() and q.get_many(0) == []
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_many(5, timeout=0.05)
    with pytest.raises(TypeError):
        q.put("not a number")
    with pytest.raises(TypeError):
        q.put_many([1, "two"])
    assert q.empty(), "nothing of a batch with a wrong item is put"
    with pytest.raises(ValueError):
        memspace.PodQueue("z")
    floats = memspace.PodQueue("d")
    floats.put_many([0.5, 1.5])
    assert floats.get_many(2) == [0.5, 1.5]
    q.put(7)
    q.close()
    assert q.is_closed()
    with pytest.raises(ValueError):
        q.put(8)
    assert q.get() == 7
    with pytest.raises(ValueError):
        q.get()

    name = unique_name("podq")
    named = memspace.PodQueue.create(name, "L", 8)
    with pytest.raises(FileExistsError):
        memspace.PodQueue.create(name, "L")
    named.put(9)
    assert memspace.PodQueue.open(name, "L").get() == 9
    with pytest.raises(TypeError):
        memspace.PodQueue.open(name, "b")
    again = pickle.loads(pickle.dumps(named))
    again.put(10)
    assert named.get() == 10
    named.unlink()
    with pytest.raises(FileNotFoundError):
        memspace.PodQueue.open(name, "L")


def _produce_numbers(q, n):
    for i in range(0, n, 100):
        q.put_many(list(range(i, min(i + 100, n))))
    q.put(-1)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pod_queue_carries_numbers_between_processes_in_order(method):
    n = 20_000
    q = memspace.PodQueue("q", 64)
    child = mp.get_context(method).Process(target=_produce_numbers, args=(q, n))
    child.start()
    got = []
    while True:
        items = q.get_many(256, timeout=60)
        got.extend(items)
        if items[-1] == -1:
            break
    child.join(60)
    assert child.exitcode == 0
    assert got == list(range(n)) + [-1]


def test_names_and_errors(unique_name):
    name = unique_name("named")
    created = memspace.SharedList.create(name)
    created.append("x")
    with pytest.raises(FileExistsError):
        memspace.SharedList.create(name)
    assert memspace.SharedList.open(name) == ["x"]
    created.unlink()
    with pytest.raises(FileNotFoundError):
        memspace.SharedList.open(name)
    with pytest.raises(FileNotFoundError):
        memspace.Lock.open(unique_name("missing"))
    with pytest.raises(ValueError):
        memspace.Value("z", 1)
    with pytest.raises(ValueError):
        memspace.Lock().acquire(False, 1.0)
    with pytest.raises(RuntimeError):
        memspace.Lock().release()
    v = memspace.Value.create(unique_name("value"), "d", 1.5)
    assert memspace.Value.open(v.name, "d").value == 1.5
