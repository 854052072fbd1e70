"""The same Python objects on a Redis server: a private redis-server on a free loopback port,
started and stopped by the test, with objects named `redis://127.0.0.1:PORT/NAME` used from
several processes."""

import multiprocessing as mp
import os
import pickle
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

import memspace

from conftest import START_METHODS


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
            # A server with a password answers NOAUTH: it is up all the same.
            return reply.startswith(b"+PONG") or b"NOAUTH" in reply
    except OSError:
        return False


def _server(password=None):
    """A private redis-server on a free loopback port; yields its port."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server: scripts/test.sh installs it")
    with tempfile.TemporaryDirectory(prefix="memspace-py-redis-") as workdir:
        port = _free_port()
        auth = ["--requirepass", password] if password else []
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, *auth],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not _answers(port):
                assert proc.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.02)
            yield port
        finally:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def redis_url():
    for port in _server():
        yield f"redis://127.0.0.1:{port}"


PASSWORD = "py-s3cret-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def redis_port_with_password():
    yield from _server(PASSWORD)


def _name(url, tag):
    return f"{url}/pytest-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _work(lock, items, d, q, n):
    for i in range(n):
        with lock:
            items.append(i)
            d[i] = d.get(i, 0) + 1
    q.put(os.getpid())


@pytest.mark.parametrize("method", START_METHODS)
def test_objects_on_redis_travel_to_processes(redis_url, method):
    ctx = mp.get_context(method)
    lock = memspace.Lock.create(_name(redis_url, "lock"))
    items = memspace.SharedList.create(_name(redis_url, "list"))
    d = memspace.SharedDict.create(_name(redis_url, "dict"))
    q = memspace.Queue.create(_name(redis_url, "queue"))
    try:
        workers = [ctx.Process(target=_work, args=(lock, items, d, q, 20)) for _ in range(3)]
        for w in workers:
            w.start()
        pids = sorted(q.get(timeout=60) for _ in workers)
        for w in workers:
            w.join(60)
            assert w.exitcode == 0
        assert pids == sorted(w.pid for w in workers)
        assert sorted(items) == sorted(list(range(20)) * 3)
        assert d.copy() == {i: 3 for i in range(20)}
        assert not lock.locked() and q.empty()
        assert memspace.SharedList.open(items.name) == items.copy()
    finally:
        for obj in (lock, items, d, q):
            obj.unlink()


def test_names_on_redis_give_python_errors(redis_url):
    name = _name(redis_url, "named")
    with pytest.raises(FileNotFoundError):
        memspace.SharedList.open(name)
    created = memspace.SharedList.create(name)
    with pytest.raises(FileExistsError):
        memspace.SharedList.create(name)
    created.append(("a", 1))
    assert memspace.SharedList.open(name) == [["a", 1]]
    created.unlink()
    with pytest.raises(FileNotFoundError):
        memspace.SharedList.open(name)
    with pytest.raises(ConnectionError, match="redis-server"):
        memspace.SharedList.open("redis://127.0.0.1:1/nothing-listens-here")


def _append_in_child(items, value):
    items.append(value)


# (A forkserver's children take the environment the server started with: the password must be
# in it before the first process starts, which this module's other tests have done already.)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_redis_password_is_never_shown_and_reaches_children(redis_port_with_password, method, monkeypatch):
    port = redis_port_with_password
    monkeypatch.delenv("MEMSPACE_REDIS_PASSWORD", raising=False)
    name = f"redis://:{PASSWORD}@127.0.0.1:{port}/pytest-auth-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    items = memspace.SharedList.create(name)
    try:
        shown = [items.name, repr(items), str(pickle.dumps(items)), str(pickle.dumps(items._raw.transport()))]
        assert all(PASSWORD not in text for text in shown), shown
        with pytest.raises(PermissionError) as refused:
            memspace.SharedList.open(name.replace(PASSWORD, "wrong-password"))
        assert "password" in str(refused.value) and PASSWORD not in str(refused.value)
        ctx = mp.get_context(method)
        if method != "fork":
            # A child that starts afresh learns the password from its environment.
            monkeypatch.setenv("MEMSPACE_REDIS_PASSWORD", PASSWORD)
        child = ctx.Process(target=_append_in_child, args=(items, method))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert items == [method]
    finally:
        items.unlink()
