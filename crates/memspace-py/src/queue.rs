//! `Queue` and `JoinableQueue`: `multiprocessing.Queue`'s API on a memspace `Queue` of
//! MessagePack values. `get` on a `Queue` acknowledges the item at once; on a
//! `JoinableQueue` it keeps the item in flight until `task_done()`, which `join()` waits for
//! (an item whose consumer dies first is delivered again).

use memspace::QueueError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rmpv::Value;

use crate::convert::{to_py, to_value};
use crate::errors;
use crate::handle;
use crate::wait::{self, Deadline, Slice};

type Inner = memspace::Queue<Value>;

pyo3::import_exception!(queue, Empty);
pyo3::import_exception!(queue, Full);

/// A FIFO queue shared by processes.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Queue {
    inner: Inner,
    joinable: bool,
}

fn queue_err(err: QueueError) -> PyErr {
    match err {
        QueueError::Full { .. } => Full::new_err(err.to_string()),
        QueueError::Empty { .. } | QueueError::Timeout { .. } => Empty::new_err(err.to_string()),
        QueueError::Closed { .. } | QueueError::NoTaskInFlight { .. } => {
            PyValueError::new_err(err.to_string())
        }
        QueueError::Other(e) => errors::to_py(&e),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

impl Queue {
    /// The class it is in Python: `Queue` or `JoinableQueue`.
    fn kind(&self) -> &'static str {
        if self.joinable {
            "JoinableQueue"
        } else {
            "Queue"
        }
    }

    /// What pickling hands `memspace._rebuild` after the name: the kind alone.
    #[allow(clippy::unnecessary_wraps)]
    fn rebuild<'py>(&self, _py: Python<'py>) -> PyResult<handle::Rebuild<'py>> {
        Ok((self.kind(), Vec::new()))
    }
}

handle::handle_pymethods! {
    "queue", rebuild = rebuild;
    #[pymethods]
    impl Queue {
        /// An anonymous queue, holding at most `maxsize` items (0: no limit); `joinable` makes it
        /// a `JoinableQueue`.
        #[new]
        #[pyo3(signature = (maxsize = 0, *, joinable = false))]
        fn new(maxsize: i64, joinable: bool) -> PyResult<Self> {
            let inner = match u64::try_from(maxsize) {
                Ok(0) | Err(_) => Inner::new(),
                Ok(n) => Inner::bounded(n),
            };
            inner
                .map(|inner| Self { inner, joinable })
                .map_err(|e| errors::to_py(&e))
        }

        /// Creates the queue `name` (`FileExistsError` if it exists).
        #[staticmethod]
        #[pyo3(signature = (name, maxsize = 0, *, joinable = false))]
        fn create(name: &str, maxsize: i64, joinable: bool) -> PyResult<Self> {
            let inner = match u64::try_from(maxsize) {
                Ok(0) | Err(_) => Inner::create(name),
                Ok(n) => Inner::create_bounded(name, n),
            };
            inner
                .map(|inner| Self { inner, joinable })
                .map_err(|e| errors::to_py(&e))
        }

        /// Opens the existing queue `name` (`FileNotFoundError` if there is none).
        #[staticmethod]
        #[pyo3(signature = (name, *, joinable = false))]
        fn open(name: &str, joinable: bool) -> PyResult<Self> {
            Inner::open(name)
                .map(|inner| Self { inner, joinable })
                .map_err(|e| errors::to_py(&e))
        }

        /// Puts `obj` in the queue, waiting for room in a bounded queue if `block`, at most
        /// `timeout` seconds (`queue.Full` then).
        #[pyo3(signature = (obj, block = true, timeout = None))]
        fn put(
            &self,
            py: Python<'_>,
            obj: &Bound<'_, PyAny>,
            block: bool,
            timeout: Option<f64>,
        ) -> PyResult<()> {
            let value = to_value(obj)?;
            if !block {
                return self.inner.try_put(&value).map_err(queue_err);
            }
            let deadline = Deadline::from_seconds(timeout, false)?;
            let done = wait::wait(
                py,
                deadline,
                |slice| match self.inner.put_timeout(&value, slice) {
                    Err(QueueError::Full { .. } | QueueError::Timeout { .. }) => Slice::Again,
                    other => Slice::Done(other),
                },
                queue_err,
            )?;
            done.ok_or_else(|| Full::new_err(format!("queue `{}` is full", self.inner.name())))
        }

        /// `put(obj, False)`.
        fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
            self.put(py, obj, false, None)
        }

        /// Takes the oldest item, waiting for one if `block`, at most `timeout` seconds
        /// (`queue.Empty` then).
        #[pyo3(signature = (block = true, timeout = None))]
        fn get<'py>(
            &self,
            py: Python<'py>,
            block: bool,
            timeout: Option<f64>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let take = |slice: Option<std::time::Duration>| {
                let delivery = match slice {
                    None => self.inner.try_receive(),
                    Some(slice) => self.inner.receive_timeout(slice),
                }?;
                if self.joinable {
                    Ok(delivery.into_task())
                } else {
                    delivery.ack()
                }
            };
            let value = if block {
                let deadline = Deadline::from_seconds(timeout, false)?;
                wait::wait(
                    py,
                    deadline,
                    |slice| match take(Some(slice)) {
                        Err(QueueError::Empty { .. } | QueueError::Timeout { .. }) => Slice::Again,
                        other => Slice::Done(other),
                    },
                    queue_err,
                )?
                .ok_or_else(|| Empty::new_err(format!("queue `{}` is empty", self.inner.name())))?
            } else {
                py.detach(|| take(None)).map_err(queue_err)?
            };
            to_py(py, &value)
        }

        /// `get(False)`.
        fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            self.get(py, false, None)
        }

        /// How many items wait in the queue.
        fn qsize(&self) -> PyResult<u64> {
            self.inner.len().map_err(|e| errors::to_py(&e))
        }

        /// Whether no item waits.
        fn empty(&self) -> PyResult<bool> {
            self.inner.is_empty().map_err(|e| errors::to_py(&e))
        }

        /// Whether a bounded queue has no room.
        fn full(&self) -> PyResult<bool> {
            let Some(capacity) = self.inner.capacity() else {
                return Ok(false);
            };
            let taken = self.inner.unacknowledged().map_err(|e| errors::to_py(&e))?;
            Ok(taken >= capacity)
        }

        /// Marks done the oldest item this process took from a `JoinableQueue`.
        fn task_done(&self) -> PyResult<()> {
            if !self.joinable {
                return Err(PyValueError::new_err(
                    "task_done() is for a JoinableQueue; a Queue's get() marks its item done",
                ));
            }
            self.inner.task_done().map_err(queue_err)
        }

        /// Waits until every item put has been marked done.
        fn join(&self, py: Python<'_>) -> PyResult<()> {
            wait::wait(
                py,
                Deadline::from_seconds(None, false)?,
                |slice| match self.inner.join_timeout(slice) {
                    Err(QueueError::Timeout { .. }) => Slice::Again,
                    other => Slice::Done(other),
                },
                queue_err,
            )
            .map(|_| ())
        }

        /// Closes the queue: it takes no more items; those in it can still be taken.
        fn close(&self) -> PyResult<()> {
            self.inner.close().map_err(|e| errors::to_py(&e))
        }

        /// Nothing to wait for: items are in shared memory once `put` returns.
        fn join_thread(&self) {}

        /// Nothing to cancel (see `join_thread`).
        fn cancel_join_thread(&self) {}

        fn __repr__(&self) -> String {
            format!("<memspace.{} {:?}>", self.kind(), self.inner.name().as_str())
        }
}
}
