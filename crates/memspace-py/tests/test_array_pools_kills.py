"""Array's buffer protocol; every object handed to the standard library's Pool and
ProcessPoolExecutor under each start method; processes killed with SIGKILL in the middle of an
append and before task_done; what Python reads of what Rust's command wrote; and a whole
program under spawn that writes nothing to stderr."""

import concurrent.futures
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time

import numpy
import pytest

import memspace

from conftest import START_METHODS
from test_memspace import _memspace_bin


def test_array_follows_multiprocessing_array():
    a = memspace.Array("i", 5)
    assert len(a) == 5 and a[:] == [0] * 5 and list(a) == [0] * 5
    a[0], a[-1] = 3, -4
    a[1:3] = [7, 8]
    assert a.tolist() == [3, 7, 8, 0, -4] and a[::2] == [3, 8, -4] and a[-2] == 0
    with pytest.raises(IndexError):
        a[5]
    with pytest.raises(IndexError):
        a[-6] = 1
    with pytest.raises(ValueError, match="length is fixed"):
        a[0:2] = [1]
    with pytest.raises(OverflowError):
        a[0] = 2**40
    with pytest.raises(ValueError, match="typecode"):
        memspace.Array("x", 3)
    with pytest.raises(TypeError, match="sequence of numbers"):
        memspace.Array("d", ["a"])
    d = memspace.Array("d", [0.5, 1.5])
    assert d.typecode == "d" and d[1] == 1.5
    with d.get_lock():
        d[0] += 1
    assert d.tolist() == [1.5, 1.5]


def test_array_buffer_is_the_shared_memory_itself():
    a = memspace.Array("q", [1, 2, 3, 4])
    view = memoryview(a)
    assert (view.format, view.itemsize, view.shape, view.readonly) == ("q", 8, (4,), False)
    view[1] = 20
    assert a[1] == 20
    a[2] = 30
    assert view[2] == 30
    n = numpy.frombuffer(a, dtype=numpy.int64)
    n += 100
    assert a.tolist() == [101, 120, 130, 104]
    f = memspace.Array("f", 3)
    numpy.frombuffer(f, dtype=numpy.float32)[:] = [0.5, 1.5, 2.5]
    assert f.tolist() == [0.5, 1.5, 2.5] and memoryview(f).format == "f"
    del a, f
    # The views keep the arrays mapped after the objects are dropped.
    assert view[1] == 120 and n.sum() == 455
    view.release()


def _add_through_numpy(a, start, n):
    view = numpy.frombuffer(a, dtype=numpy.int32)
    for _ in range(n):
        with a.get_lock():
            view[start:] += 1


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_array_writes_through_numpy_in_children_reach_the_parent(method):
    ctx = mp.get_context(method)
    a = memspace.Array("i", 4)
    children = [ctx.Process(target=_add_through_numpy, args=(a, i, 200)) for i in range(4)]
    for c in children:
        c.start()
    for c in children:
        c.join(60)
        assert c.exitcode == 0
    assert a.tolist() == [200, 400, 600, 800]


def _hold_array_lock(a, ready):
    a.get_lock().acquire()
    a[0] = 1
    ready.set()
    time.sleep(600)


def test_array_lock_of_a_killed_holder_goes_to_the_next_acquirer():
    ctx = mp.get_context("fork")
    a, ready = memspace.Array("i", 2), ctx.Event()
    holder = ctx.Process(target=_hold_array_lock, args=(a, ready))
    holder.start()
    assert ready.wait(60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with pytest.raises(memspace.OwnerDied):
        a.acquire(timeout=30)
    assert a[0] == 1
    a[1] = 1
    a.get_lock().mark_consistent()
    a.release()
    with a:
        assert a.tolist() == [1, 1]


def _everything(names):
    """One of each object, with the state `_use` checks."""
    objs = {
        "Lock": memspace.Lock(),
        "RLock": memspace.RLock(),
        "SharedList": memspace.SharedList([1, "two"]),
        "SharedDict": memspace.SharedDict({"k": [1]}),
        "Queue": memspace.Queue(),
        "JoinableQueue": memspace.JoinableQueue(),
        "Value": memspace.Value("d", 2.5),
        "Array": memspace.Array("i", [1, 2, 3]),
        "Event": memspace.Event(),
        "Semaphore": memspace.Semaphore(2),
        "BoundedSemaphore": memspace.BoundedSemaphore(1),
        "Barrier": memspace.Barrier(1),
        "Condition": memspace.Condition(),
        "named SharedList": memspace.SharedList.create(names[0]),
        "named Value": memspace.Value.create(names[1], "i", 0),
    }
    objs["Queue"].put("hello")
    objs["JoinableQueue"].put("job")
    objs["Event"].set()
    return objs


def _use(kind, obj):
    """What a worker does with `obj` of `kind`; returns what it saw."""
    if kind in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
        with obj:
            return "held"
    if kind == "SharedList":
        obj.append(os.getpid())
        return obj[:2]
    if kind == "SharedDict":
        obj[str(os.getpid())] = True
        return obj["k"]
    if kind == "Queue":
        return obj.get(timeout=30)
    if kind == "JoinableQueue":
        got = obj.get(timeout=30)
        obj.task_done()
        return got
    if kind == "Value":
        with obj.get_lock():
            obj.value += 1
        return "added"
    if kind == "Array":
        memoryview(obj)[0] = 10
        return obj[1:]
    if kind == "Event":
        return obj.wait(30)
    if kind == "Barrier":
        return obj.wait(30)
    if kind == "Condition":
        with obj:
            obj.notify_all()
        return "notified"
    if kind == "named SharedList":
        obj.append(kind)
        return obj.name
    if kind == "named Value":
        obj.value = 7
        return obj.value
    raise AssertionError(kind)


def _check(objs, results, names):
    assert results["Lock"] == results["RLock"] == results["Semaphore"] == "held"
    assert results["BoundedSemaphore"] == "held"
    assert results["SharedList"] == [1, "two"] and len(objs["SharedList"]) == 3
    assert results["SharedDict"] == [1] and len(objs["SharedDict"]) == 2
    assert results["Queue"] == "hello" and objs["Queue"].empty()
    assert results["JoinableQueue"] == "job"
    objs["JoinableQueue"].join()
    assert objs["Value"].value == 3.5
    assert results["Array"] == [2, 3] and objs["Array"][0] == 10
    assert results["Event"] is True and results["Barrier"] == 0
    assert results["Condition"] == "notified"
    assert results["named SharedList"] == names[0]
    assert objs["named SharedList"] == ["named SharedList"]
    assert results["named Value"] == 7 and objs["named Value"].value == 7
    for kind in ("Lock", "RLock"):
        assert not objs[kind].locked()


@pytest.mark.parametrize("method", START_METHODS)
def test_every_object_travels_through_a_pool(method, unique_name):
    names = [unique_name("pool-list"), unique_name("pool-value")]
    objs = _everything(names)
    with mp.get_context(method).Pool(2) as pool:
        results = dict(zip(objs, pool.starmap(_use, objs.items())))
    _check(objs, results, names)


@pytest.mark.parametrize("method", START_METHODS)
def test_every_object_travels_through_a_process_pool_executor(method, unique_name):
    names = [unique_name("ppe-list"), unique_name("ppe-value")]
    objs = _everything(names)
    ctx = mp.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        futures = {kind: pool.submit(_use, kind, obj) for kind, obj in objs.items()}
        results = {kind: f.result(timeout=120) for kind, f in futures.items()}
    _check(objs, results, names)


def _append_forever(items, acked):
    """Appends items whose content says where they belong, counting each acknowledged one."""
    i = 0
    while True:
        items.append({"i": i, "pad": "x" * (i % 500), "tail": [i] * 8})
        acked.value = i + 1
        i += 1


def test_a_writer_killed_in_the_middle_of_append_leaves_a_consistent_list():
    ctx = mp.get_context("fork")
    for round_ in range(8):
        items, acked = memspace.SharedList(), memspace.Value("q", 0)
        writer = ctx.Process(target=_append_forever, args=(items, acked))
        writer.start()
        while acked.value < 200 + 300 * round_:
            time.sleep(0.001)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        n, got = acked.value, items.copy()
        # Every acknowledged append is there; at most the one in flight besides.
        assert n <= len(got) <= n + 1, (n, len(got))
        for i, item in enumerate(got):
            assert item == {"i": i, "pad": "x" * (i % 500), "tail": [i] * 8}
        # The list takes appends after the kill.
        items.append("after")
        assert items[-1] == "after" and len(items) == len(got) + 1


def _take_and_die(jobs, taken):
    taken.put(jobs.get(timeout=30))
    time.sleep(600)


def _take_and_finish(jobs, out):
    out.put(jobs.get(timeout=30))
    jobs.task_done()


def test_an_item_of_a_consumer_killed_before_task_done_goes_to_the_next():
    ctx = mp.get_context("fork")
    jobs, taken, out = memspace.JoinableQueue(), memspace.Queue(), memspace.Queue()
    jobs.put({"job": 1})
    victim = ctx.Process(target=_take_and_die, args=(jobs, taken))
    victim.start()
    assert taken.get(timeout=30) == {"job": 1}
    joined = threading.Event()
    threading.Thread(target=lambda: (jobs.join(), joined.set()), daemon=True).start()
    assert not joined.wait(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    finisher = ctx.Process(target=_take_and_finish, args=(jobs, out))
    finisher.start()
    assert out.get(timeout=30) == {"job": 1}
    finisher.join(30)
    assert joined.wait(30) and jobs.empty()


def test_python_reads_what_rust_wrote(unique_name):
    binary = _memspace_bin()
    lname, mname = unique_name("from-rust-list"), unique_name("from-rust-map")
    subprocess.run([binary, "list", "create", lname], check=True, capture_output=True)
    values = ['null', 'true', '-5', '2.25', '"héllo"', '[1,"a",[2.5]]', '{"k":{"n":null}}']
    subprocess.run([binary, "list", "push", lname, *values], check=True, capture_output=True)
    got = memspace.SharedList.open(lname)
    assert got == [None, True, -5, 2.25, "héllo", [1, "a", [2.5]], {"k": {"n": None}}]
    subprocess.run([binary, "map", "create", mname], check=True, capture_output=True)
    subprocess.run([binary, "map", "set", mname, '"key"', '[1,2]'], check=True, capture_output=True)
    subprocess.run([binary, "map", "set", mname, "3", '"three"'], check=True, capture_output=True)
    d = memspace.SharedDict.open(mname)
    assert d.copy() == {"key": [1, 2], 3: "three"}
    # And back: what Python changes, the command reads.
    d["py"] = {"x": [None]}
    got.append(("t", 1))
    out = subprocess.run([binary, "map", "get", mname, '"py"'], check=True, capture_output=True, text=True)
    assert out.stdout.strip().replace(" ", "") == '{"x":[null]}'
    out = subprocess.run([binary, "list", "get", lname, "-1"], check=True, capture_output=True, text=True)
    assert out.stdout.strip().replace(" ", "") == '["t",1]'
    subprocess.run([binary, "rm", lname, mname], check=True, capture_output=True)


QUIET_PROGRAM = """
import multiprocessing as mp
import memspace

def work(items, counter, q, a):
    items.append(1)
    with counter.get_lock():
        counter.value += 1
    a[0] += 1
    q.put("done")

if __name__ == "__main__":
    mp.set_start_method("spawn")
    items, counter, q = memspace.SharedList(), memspace.Value("i", 0), memspace.Queue()
    a = memspace.Array("i", 1)
    ps = [mp.Process(target=work, args=(items, counter, q, a)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    assert [q.get(timeout=30) for _ in ps] == ["done"] * 3
    assert items == [1, 1, 1] and counter.value == 3
    print("ok")
"""


def test_a_program_under_spawn_writes_nothing_to_stderr(tmp_path):
    program = tmp_path / "quiet.py"
    program.write_text(QUIET_PROGRAM)
    run = subprocess.run(
        [sys.executable, "-W", "always", str(program)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
    assert run.stderr == ""
