"""Shared memory for Python processes: the objects of ``multiprocessing`` (``Lock``, ``RLock``,
``Queue``, ``JoinableQueue``, ``Value``, ``Array``), a ``SharedList`` that behaves as a ``list`` and a
``SharedDict`` that behaves as a ``dict``, in
memspace's robust shared memory; and a ``PodQueue`` of numbers of one typecode, put and taken
without a lock (``Queue``'s method names, with ``put_many`` and ``get_many`` for lists).

Every object pickles as a reference to its segment, so it can be passed to
``multiprocessing.Process``, ``Pool`` and ``ProcessPoolExecutor`` under any start method. An
object made with ``Kind()`` is anonymous: removed when the last process using it exits. One made
with ``Kind.create("name")`` persists until removed; ``Kind.open("name")`` opens it
(``redis://HOST:PORT/NAME`` puts it on a Redis server).

Items are stored in MessagePack, as the Rust crate stores them: ``None``, ``bool``, ``int`` (64
bits), ``float``, ``str``, ``bytes``, and lists, tuples (read back as lists) and dicts of them,
readable from Rust (``SharedList<serde_json::Value>``) and ``memspace list get NAME``. Anything
else is pickled into a MessagePack extension (type ``PICKLE_EXT_TYPE``), readable only from
Python.

A process killed while holding a ``Lock`` never blocks the others: the next ``acquire`` takes
the lock and raises ``OwnerDied`` with the lock held. Repair what the lock protects, call
``lock.mark_consistent()``, then ``lock.release()``::

    try:
        lock.acquire()
    except memspace.OwnerDied:
        repair()
        lock.mark_consistent()
    try:
        ...
    finally:
        lock.release()

``Event``, ``Semaphore``, ``BoundedSemaphore``, ``Barrier`` (with an ``action`` for an
anonymous one) and ``Condition`` (with a ``memspace.RLock``, its own by default, or a
``memspace.Lock``) follow ``multiprocessing``'s; a broken ``Barrier`` raises
``threading.BrokenBarrierError``. A semaphore's permit held by a process that dies comes back,
and a party that dies waiting at a barrier breaks it.

Blocking calls release the GIL and wait in slices of 50 ms, so Ctrl-C interrupts them.
"""

from collections.abc import MutableMapping, MutableSequence

from . import _memspace
from ._memspace import (
    PICKLE_EXT_TYPE,
    Array,
    Barrier,
    Condition,
    Event,
    Lock,
    OwnerDied,
    PodQueue,
    Queue,
    RLock,
    Semaphore,
    Value,
)

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "OwnerDied",
    "PICKLE_EXT_TYPE",
    "PodQueue",
    "Queue",
    "RLock",
    "Semaphore",
    "SharedDict",
    "SharedList",
    "Value",
]


def JoinableQueue(maxsize=0):  # noqa: N802 (named as multiprocessing's class)
    """A ``Queue`` whose ``get`` keeps the item unfinished until ``task_done()``, which
    ``join()`` waits for (``multiprocessing.JoinableQueue``)."""
    return Queue(maxsize, joinable=True)


def BoundedSemaphore(value=1):  # noqa: N802 (named as multiprocessing's class)
    """A ``Semaphore`` that raises ``ValueError`` when released more often than acquired
    (``multiprocessing.BoundedSemaphore``)."""
    return Semaphore(value, bounded=True)


class _Named:
    """What a shared collection's wrapper does with its handle (`_raw`, an object of the
    extension class `_memspace.<_KIND>`): the named constructors, the name, removal, pickling
    as a reference, and the length."""

    __slots__ = ()
    _KIND = ""

    @classmethod
    def _wrap(cls, raw):
        self = cls.__new__(cls)
        self._raw = raw
        return self

    @classmethod
    def create(cls, name):
        """Creates the object ``name`` (``FileExistsError`` if it exists)."""
        return cls._wrap(getattr(_memspace, cls._KIND).create(name))

    @classmethod
    def open(cls, name):
        """Opens the existing object ``name`` (``FileNotFoundError`` if there is none)."""
        return cls._wrap(getattr(_memspace, cls._KIND).open(name))

    @property
    def name(self):
        """The object's name."""
        return self._raw.name

    def unlink(self):
        """Removes the object's name; processes that have it open keep using it."""
        self._raw.unlink()

    def __reduce__(self):
        return (_rebuild, (self._KIND, self._raw.transport()))

    def __len__(self):
        return len(self._raw)


class SharedList(_Named, MutableSequence):
    """A list in shared memory: ``collections.abc.MutableSequence`` with indexing, slicing,
    negative indices, ``append``, ``extend``, ``insert``, ``pop``, ``remove``, ``len``,
    iteration and ``==`` with a list. Each call is atomic; a sequence of calls is not (hold a
    ``Lock`` around it)."""

    __slots__ = ("_raw",)
    _KIND = "SharedList"

    def __init__(self, iterable=()):
        self._raw = _memspace.SharedList()
        if iterable:
            self._raw.extend(iterable)

    def _index(self, index, for_insert=False):
        n = len(self._raw)
        if index < 0:
            index += n
        if for_insert:
            return min(max(index, 0), n)
        if not 0 <= index < n:
            raise IndexError("list index out of range")
        return index

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._raw.to_list()[index]
        return self._raw.get(self._index(index.__index__()))

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            items = self._raw.to_list()
            items[index] = value
            self._replace(items)
        else:
            self._raw.set(self._index(index.__index__()), value)

    def __delitem__(self, index):
        if isinstance(index, slice):
            items = self._raw.to_list()
            del items[index]
            self._replace(items)
        else:
            self._raw.remove_at(self._index(index.__index__()))

    def _replace(self, items):
        self._raw.clear()
        self._raw.extend(items)

    def insert(self, index, value):
        self._raw.insert(self._index(index.__index__(), for_insert=True), value)

    def append(self, value):
        self._raw.append(value)

    def extend(self, values):
        self._raw.extend(list(values))

    def pop(self, index=-1):
        if index == -1:
            return self._raw.pop()
        return self._raw.remove_at(self._index(index.__index__()))

    def clear(self):
        self._raw.clear()

    def copy(self):
        """The items, as a plain list."""
        return self._raw.to_list()

    def __iter__(self):
        return iter(self._raw.to_list())

    def __eq__(self, other):
        if isinstance(other, SharedList):
            other = other.copy()
        if isinstance(other, list):
            return self._raw.to_list() == other
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(self._raw.to_list())


_MISSING = object()


class SharedDict(_Named, MutableMapping):
    """A dict in shared memory: ``collections.abc.MutableMapping`` with ``d[k]``,
    ``d[k] = v``, ``del d[k]``, ``get``, ``pop``, ``setdefault``, ``update``, ``clear``,
    ``len``, ``in``, iteration over the keys and ``==`` with a dict. ``keys()``, ``items()``
    and ``values()`` are views of a copy read at once. Each call is atomic, ``setdefault``
    included; a sequence of calls (``update``, ``d[k] += 1``) is not (hold a ``Lock`` around
    it).

    Keys are stored as items are, and compared by their stored form: keys Python holds equal
    are one key (``1``, ``1.0`` and ``True`` are the key ``1``, read back as ``1``); tuples are
    read back as tuples. A key stored pickled (an instance of a class, a ``frozenset``) is the
    same key only where it pickles to the same bytes, which a ``frozenset`` of strings does not
    across processes: prefer keys of the built-in types. Entries come in no particular order."""

    __slots__ = ("_raw",)
    _KIND = "SharedDict"

    def __init__(self, *args, **kwargs):
        self._raw = _memspace.SharedDict()
        if args or kwargs:
            self.update(*args, **kwargs)

    def __getitem__(self, key):
        return self._raw.get_item(key)

    def __setitem__(self, key, value):
        self._raw.set_item(key, value)

    def __delitem__(self, key):
        self._raw.remove(key)

    def __contains__(self, key):
        return self._raw.contains(key)

    def __iter__(self):
        return iter(self._raw.keys_list())

    def get(self, key, default=None):
        try:
            return self._raw.get_item(key)
        except KeyError:
            return default

    def setdefault(self, key, default=None):
        """``d[key]``, set to ``default`` first if ``key`` has no value, in one atomic step:
        of several processes calling it at once, one sets the value and all get it."""
        return self._raw.setdefault(key, default)

    def pop(self, key, default=_MISSING):
        try:
            return self._raw.remove(key)
        except KeyError:
            if default is _MISSING:
                raise
            return default

    def clear(self):
        self._raw.clear()

    def copy(self):
        """The entries, read at once, as a plain dict."""
        return self._raw.to_dict()

    def keys(self):
        return self.copy().keys()

    def items(self):
        return self.copy().items()

    def values(self):
        return self.copy().values()

    def __eq__(self, other):
        if isinstance(other, SharedDict):
            other = other.copy()
        if isinstance(other, dict):
            return self.copy() == other
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"SharedDict({self.copy()!r})"


_OPENERS = {
    "Lock": Lock.open,
    "RLock": RLock.open,
    "Queue": Queue.open,
    "PodQueue": PodQueue.open,
    "JoinableQueue": lambda name: Queue.open(name, joinable=True),
    "Value": Value.reopen,
    "Array": Array.reopen,
    "SharedList": SharedList.open,
    "SharedDict": SharedDict.open,
    "Event": Event.open,
    "Semaphore": Semaphore.open,
    "Barrier": Barrier.open,
    "Barrier with action": Barrier.reopen,
    "Condition": Condition.open,
}


def _rebuild(kind, *args):
    """Reopens a pickled object by the name it travelled as."""
    return _OPENERS[kind](*args)
