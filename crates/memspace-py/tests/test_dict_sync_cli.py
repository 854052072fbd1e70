"""SharedDict, Event, Semaphore, BoundedSemaphore, Barrier and Condition against real
processes, `python -m memspace` and `python -m memspace.bench`."""

import json
import multiprocessing as mp
import os
import pickle
import random
import signal
import functools
import subprocess
import sys
import threading
import time

import pytest

import memspace

from test_memspace import _memspace_bin

METHODS = ["fork", "spawn"]


def test_shared_dict_follows_a_plain_dict():
    rng = random.Random(17)
    shared, model = memspace.SharedDict(), {}
    keys = [None, True, 0, 1, 1.0, 2.5, -7, 2**63 - 1, 2**70, "", "k", "ключ", b"b", (1, "a"), ((1,), 2)]
    values = [None, False, 3, 1.5, "v", b"\x00", [1, [2]], {"x": (1, 2)}, {5, 6}, 2**80]

    def stored(v):
        if isinstance(v, tuple):
            return [stored(x) for x in v]
        if isinstance(v, list):
            return [stored(x) for x in v]
        if isinstance(v, dict):
            return {k: stored(x) for k, x in v.items()}
        return v

    for _ in range(3000):
        op = rng.randrange(10)
        k, v = rng.choice(keys), rng.choice(values)
        if op in (0, 1, 2):
            shared[k] = v; model[k] = stored(v)
        elif op == 3:
            if k in model:
                assert shared[k] == model[k]
            else:
                with pytest.raises(KeyError):
                    shared[k]
            assert shared.get(k, "none") == model.get(k, "none")
        elif op == 4:
            if k in model:
                del shared[k]; del model[k]
            else:
                with pytest.raises(KeyError):
                    del shared[k]
        elif op == 5:
            assert shared.pop(k, "gone") == model.pop(k, "gone")
        elif op == 6:
            assert stored(shared.setdefault(k, v)) == model.setdefault(k, stored(v))
        elif op == 7:
            other = {rng.choice(keys): rng.choice(values) for _ in range(3)}
            shared.update(other, extra=1); model.update({a: stored(b) for a, b in other.items()}, extra=1)
        elif op == 8:
            assert (k in shared) == (k in model)
        elif op == 9 and rng.random() < 0.05:
            shared.clear(); model.clear()
        assert len(shared) == len(model)
    assert shared == model
    assert set(shared) == set(model) and len(list(shared)) == len(model)
    assert dict(shared.items()) == model and sorted(map(repr, shared.values())) == sorted(map(repr, model.values()))
    assert set(shared.keys()) == set(model.keys())
    assert pickle.loads(pickle.dumps(shared)) == model
    with pytest.raises(KeyError):
        shared.pop(object())
    with pytest.raises(TypeError):
        shared[[1]] = 2  # a list is no key, as in a dict


def test_shared_dict_keys_python_holds_equal_are_one_key():
    d = memspace.SharedDict({1: "int"})
    d[True] = "bool"
    d[1.0] = "float"
    assert dict(d) == {1: "float"} and len(d) == 1
    d[(1, (2, "x"))] = "tuple"
    assert d[(1, (2, "x"))] == "tuple" and (1, (2, "x")) in d.keys()


def _count_words(d, lock, words, n):
    for i in range(n):
        for w in words:
            with lock:
                d[w] = d.get(w, 0) + 1
    d[("done", os.getpid())] = n


@pytest.mark.parametrize("method", METHODS)
def test_shared_dict_across_processes(method):
    ctx = mp.get_context(method)
    d, lock = memspace.SharedDict(), memspace.Lock()
    words = ["a", "b", "c"]
    workers = [ctx.Process(target=_count_words, args=(d, lock, words, 100)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert {k: d[k] for k in words} == {w: 300 for w in words}
    assert {k[1] for k in d if isinstance(k, tuple)} == {w.pid for w in workers}


def test_shared_dict_by_name(unique_name):
    name = unique_name("dict")
    d = memspace.SharedDict.create(name)
    d["x"] = [1, 2]
    with pytest.raises(FileExistsError):
        memspace.SharedDict.create(name)
    assert memspace.SharedDict.open(name)["x"] == [1, 2] and d.name == name
    d.unlink()
    with pytest.raises(FileNotFoundError):
        memspace.SharedDict.open(name)


def _wait_and_report(event, out, go):
    out.put(("waiting", os.getpid()))
    out.put(("woke", event.wait(60), go.is_set()))


@pytest.mark.parametrize("method", METHODS)
def test_event_wakes_waiting_processes(method):
    ctx = mp.get_context(method)
    event, go, out = memspace.Event(), memspace.Event(), memspace.Queue()
    assert not event.is_set() and event.wait(0.05) is False and event.wait(0) is False
    waiters = [ctx.Process(target=_wait_and_report, args=(event, out, go)) for _ in range(3)]
    for w in waiters:
        w.start()
    assert sorted(out.get(timeout=60)[1] for _ in waiters) == sorted(w.pid for w in waiters)
    go.set()
    event.set()
    assert [out.get(timeout=60) for _ in waiters] == [["woke", True, True]] * 3
    for w in waiters:
        w.join(60)
        assert w.exitcode == 0
    assert event.is_set() and event.wait() is True
    event.clear()
    assert not event.is_set()
    assert pickle.loads(pickle.dumps(event)).name == event.name


def _hold_permit(sem, inside, peak, lock, n):
    for _ in range(n):
        with sem:
            with lock:
                inside.value += 1
                peak.value = max(peak.value, inside.value)
            time.sleep(0.001)
            with lock:
                inside.value -= 1


@pytest.mark.parametrize("method", METHODS)
def test_semaphore_admits_at_most_its_value(method):
    ctx = mp.get_context(method)
    sem, lock = memspace.Semaphore(2), memspace.Lock()
    inside, peak = memspace.Value("i", 0), memspace.Value("i", 0)
    workers = [ctx.Process(target=_hold_permit, args=(sem, inside, peak, lock, 30)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert peak.value == 2 and inside.value == 0 and sem.get_value() == 2


def test_semaphore_follows_threading():
    sem = memspace.Semaphore(1)
    assert sem.acquire() is True
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0.05) is False
    with pytest.raises(ValueError):
        sem.acquire(False, 1)
    sem.release()
    sem.release()  # an unbounded semaphore grows
    assert sem.get_value() == 2
    with pytest.raises(ValueError):
        memspace.Semaphore(-1)
    bounded = memspace.BoundedSemaphore(2)
    with bounded:
        assert bounded.get_value() == 1
    with pytest.raises(ValueError):
        bounded.release()
    assert bounded.acquire(block=False) and bounded.get_value() == 1


def _take_and_die(sem, ready):
    sem.acquire()
    ready.set()
    time.sleep(600)


def test_permit_of_a_killed_holder_comes_back():
    ctx = mp.get_context("spawn")
    sem, ready = memspace.BoundedSemaphore(1), memspace.Event()
    holder = ctx.Process(target=_take_and_die, args=(sem, ready))
    holder.start()
    assert ready.wait(60)
    assert not sem.acquire(timeout=0.1)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert sem.acquire(timeout=30)
    sem.release()


def _meet(barrier, out, rounds):
    for r in range(rounds):
        out.put((r, barrier.wait()))


@pytest.mark.parametrize("method", METHODS)
def test_barrier_releases_parties_together(method):
    ctx = mp.get_context(method)
    barrier, out = memspace.Barrier(3), memspace.Queue()
    assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
    parties = [ctx.Process(target=_meet, args=(barrier, out, 5)) for _ in range(3)]
    for p in parties:
        p.start()
    got = [out.get(timeout=60) for _ in range(15)]
    for p in parties:
        p.join(60)
        assert p.exitcode == 0
    for r in range(5):
        assert sorted(i for rr, i in got if rr == r) == [0, 1, 2]
    # Rounds happen in order: no party starts round r+1 before all ended round r.
    assert [rr for rr, _ in got] == sorted(rr for rr, _ in got)


def _wait_broken(barrier, out):
    try:
        barrier.wait()
        out.put("passed")
    except threading.BrokenBarrierError:
        out.put("broken")


@pytest.mark.parametrize("method", METHODS)
def test_barrier_breaks_on_timeout_and_abort(method):
    ctx = mp.get_context(method)
    barrier, out = memspace.Barrier(3, timeout=30), memspace.Queue()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=0.05)
    assert barrier.broken
    barrier.reset()
    assert not barrier.broken
    waiter = ctx.Process(target=_wait_broken, args=(barrier, out))
    waiter.start()
    while barrier.n_waiting != 1:
        time.sleep(0.01)
    barrier.abort()
    assert out.get(timeout=60) == "broken"
    waiter.join(60)
    assert barrier.broken
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    with pytest.raises(ValueError):
        memspace.Barrier(0)
    copy = pickle.loads(pickle.dumps(barrier))
    assert copy.timeout == 30 and copy.broken


def _consume(cond, items, out, n):
    for _ in range(n):
        with cond:
            assert cond.wait_for(lambda: len(items) > 0, timeout=60)
            out.put(items.pop(0))


@pytest.mark.parametrize("method", METHODS)
def test_condition_hands_items_to_waiting_processes(method):
    ctx = mp.get_context(method)
    cond, items, out = memspace.Condition(), memspace.SharedList(), memspace.Queue()
    consumers = [ctx.Process(target=_consume, args=(cond, items, out, 10)) for _ in range(2)]
    for c in consumers:
        c.start()
    for i in range(20):
        with cond:
            items.append(i)
            cond.notify()
    assert sorted(out.get(timeout=60) for _ in range(20)) == list(range(20))
    for c in consumers:
        c.join(60)
        assert c.exitcode == 0


def test_condition_follows_threading():
    lock = memspace.Lock()
    cond = memspace.Condition(lock)
    assert cond.lock.name == lock.name
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.wait(0)
    with cond:
        assert lock.locked()
        assert cond.wait(0.05) is False
        assert lock.locked()
        assert cond.wait_for(lambda: 0, timeout=0.05) == 0
        cond.notify_all()
        cond.notify(sys.maxsize)
    assert not lock.locked()
    # A thread notified while another waits.
    woke = []

    def waiter():
        with cond:
            woke.append(cond.wait(60))

    t = threading.Thread(target=waiter)
    t.start()
    while not woke:
        with cond:
            cond.notify()
        time.sleep(0.01)
    t.join()
    assert woke == [True]


@pytest.mark.parametrize("call", ["event", "semaphore", "barrier", "condition"])
def test_ctrl_c_interrupts_a_blocked_wait(call):
    program = (
        "import memspace, signal, sys, threading\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "ev, sem, bar, cond = memspace.Event(), memspace.Semaphore(0), memspace.Barrier(2), memspace.Condition()\n"
        "wait = {'event': ev.wait, 'semaphore': sem.acquire, 'barrier': bar.wait, 'condition': cond.wait}[sys.argv[1]]\n"
        "if sys.argv[1] == 'condition':\n"
        "    cond.acquire()\n"
        "print('waiting', flush=True)\n"
        "try:\n"
        "    wait()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', bar.broken, cond.lock.locked(), flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", program, call], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "waiting\n"
    time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=30)
    assert out == f"interrupted {call == 'barrier'} {call == 'condition'}\n"
    assert child.returncode == 0


def test_python_m_memspace_runs_the_command(unique_name):
    binary = _memspace_bin()
    name = unique_name("cli")
    items = memspace.SharedDict.create(name)
    env = dict(os.environ, MEMSPACE_BIN=binary)
    ls = subprocess.run([sys.executable, "-m", "memspace", "ls"], capture_output=True, text=True, env=env, timeout=60)
    direct = subprocess.run([binary, "ls"], capture_output=True, text=True, timeout=60)
    assert ls.returncode == direct.returncode == 0
    assert name in ls.stdout
    bad = subprocess.run([sys.executable, "-m", "memspace", "no-such-command"], capture_output=True, env=env, timeout=60)
    wrong = subprocess.run([binary, "no-such-command"], capture_output=True, timeout=60)
    assert bad.returncode == wrong.returncode != 0
    items.unlink()


def test_python_m_memspace_without_the_command():
    env = dict(os.environ, MEMSPACE_BIN="/nonexistent/memspace")
    run = subprocess.run([sys.executable, "-m", "memspace", "ls"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 127
    assert "MEMSPACE_BIN" in run.stderr and "cargo install" in run.stderr


def test_python_m_memspace_bench_quick_json_has_every_row():
    run = subprocess.run(
        [sys.executable, "-m", "memspace.bench", "--quick", "--json"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    expected = {
        ("list_append", "Manager().list()"),
        ("list_append", "ShareableList + mp.Lock"),
        ("dict_set", "Manager().dict()"),
        ("dict_get", "Manager().dict()"),
        ("queue_put_get", "multiprocessing.Queue"),
        ("pod_queue_put_get", "multiprocessing.Queue"),
        ("lock_uncontended", "multiprocessing.Lock"),
    }
    got = {(r["scenario"], r["baseline"]) for r in rows}
    assert expected <= got, f"missing rows: {sorted(expected - got)}"
    assert got - expected <= {("queue_put_get", "faster_fifo.Queue")}
    for r in rows:
        assert r["memspace"] > 0 and r["baseline_rate"] > 0 and r["ratio"] > 0, r
        assert r["unit"].endswith("/s")


def _consume_reentrant(cond, items, out, n):
    for _ in range(n):
        with cond:
            with cond:
                assert cond.wait_for(lambda: len(items) > 0, timeout=60)
                out.put(items.pop(0))


@pytest.mark.parametrize("method", METHODS)
def test_condition_waits_with_an_rlock_held_twice(method):
    ctx = mp.get_context(method)
    lock = memspace.RLock()
    cond, items, out = memspace.Condition(lock), memspace.SharedList(), memspace.Queue()
    assert memspace.Condition().lock.__class__ is memspace.RLock
    consumers = [ctx.Process(target=_consume_reentrant, args=(cond, items, out, 5)) for _ in range(2)]
    for c in consumers:
        c.start()
    for i in range(10):
        with cond:
            items.append(i)
            cond.notify()
    assert sorted(out.get(timeout=60) for _ in range(10)) == list(range(10))
    for c in consumers:
        c.join(60)
        assert c.exitcode == 0
    # The wait released both levels and took both back.
    with cond:
        with cond:
            assert cond.wait(0.01) is False
            assert lock.locked()
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(TypeError, match="memspace.Lock or a memspace.RLock"):
        memspace.Condition(threading.Lock())


def _count_round(counter):
    with counter.get_lock():
        counter.value += 1


def _meet_with_action(barrier, counter, seen, rounds):
    for _ in range(rounds):
        barrier.wait(60)
        # The action of this round ran before any party left the barrier.
        seen.append(counter.value)
        barrier.wait(60)


@pytest.mark.parametrize("method", METHODS)
def test_barrier_action_runs_once_per_round_before_any_party_leaves(method):
    ctx = mp.get_context(method)
    counter, seen = memspace.Value("i", 0), memspace.SharedList()
    barrier = memspace.Barrier(3, action=functools.partial(_count_round, counter))
    parties = [ctx.Process(target=_meet_with_action, args=(barrier, counter, seen, 4)) for _ in range(3)]
    for p in parties:
        p.start()
    for p in parties:
        p.join(60)
        assert p.exitcode == 0
    # Two waits per round, each running the action once.
    assert counter.value == 8
    assert sorted(seen) == sorted([1, 3, 5, 7] * 3)


def _fail():
    raise ValueError("the action failed")


def test_a_failing_barrier_action_breaks_the_barrier():
    barrier = memspace.Barrier(2, action=_fail)
    other = []
    t = threading.Thread(target=lambda: other.append(_wait_or_broken(barrier)))
    t.start()
    first = _wait_or_broken(barrier)
    t.join()
    assert sorted([first, other[0]], key=str) == sorted(["ValueError", "broken"], key=str)
    assert barrier.broken
    with pytest.raises(TypeError, match="callable"):
        memspace.Barrier(2, action=3)


def _wait_or_broken(barrier):
    try:
        barrier.wait(30)
        return "passed"
    except threading.BrokenBarrierError:
        return "broken"
    except ValueError:
        return "ValueError"


def _claim(d, out, go):
    go.wait(60)
    out.put((os.getpid(), d.setdefault("leader", os.getpid())))


@pytest.mark.parametrize("method", METHODS)
def test_setdefault_is_atomic_across_processes(method):
    ctx = mp.get_context(method)
    d, out, go = memspace.SharedDict(), memspace.Queue(), memspace.Event()
    assert d.setdefault("k", [1]) == [1] and d.setdefault("k", [2]) == [1]
    assert d.setdefault("none") is None and "none" in d
    claimants = [ctx.Process(target=_claim, args=(d, out, go)) for _ in range(4)]
    for c in claimants:
        c.start()
    go.set()
    got = [out.get(timeout=60) for _ in claimants]
    for c in claimants:
        c.join(60)
    leader = d["leader"]
    assert leader in [pid for pid, _ in got]
    assert all(held == leader for _, held in got), got
