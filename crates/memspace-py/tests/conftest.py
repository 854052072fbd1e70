"""Shared helpers: unique names, and a check that no test leaves a segment in /dev/shm."""

import os
import uuid

import pytest

START_METHODS = ["fork", "spawn", "forkserver"]


def memspace_segments():
    return {n for n in os.listdir("/dev/shm") if n.startswith("memspace.")}


@pytest.fixture
def unique_name():
    """A name no other test uses; its segments are removed at the end."""
    names = []

    def make(tag="t"):
        name = f"pytest-{tag}-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        names.append(name)
        return name

    yield make
    for name in names:
        for suffix in ("", ".lock"):
            path = f"/dev/shm/memspace.{name}{suffix}"
            if os.path.exists(path):
                os.unlink(path)


@pytest.fixture(autouse=True)
def no_leftover_segments():
    """Every anonymous segment a test made is gone once its objects are."""
    import gc

    before = memspace_segments()
    yield
    gc.collect()
    leaked = {n for n in memspace_segments() - before if ".anon." in n or n.startswith("memspace.anon.")}
    assert not leaked, f"segments left in /dev/shm: {sorted(leaked)}"
