"""SharedDict, Event, Semaphore, BoundedSemaphore, Barrier and Condition against real
processes, and `python -m memspace`."""

import multiprocessing as mp
import os
import pickle
import random
import signal
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
