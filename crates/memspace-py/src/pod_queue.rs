//! `PodQueue(typecode, capacity)`: a memspace `PodQueue<T>` of the typecode's number type,
//! with `multiprocessing.Queue`'s method names (`put`, `get`, their `_nowait` forms, `qsize`,
//! `empty`, `full`, `close`), and `put_many`/`get_many` that move a list of numbers in one
//! call. Its items are numbers kept in a ring of fixed capacity, put and taken without a lock:
//! no pickling, no feeder thread, no pipe.

use std::time::Duration;

use bytemuck::Pod;
use memspace::QueueError;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::errors;
use crate::queue::{Empty, Full};
use crate::typecode::{self, with_typecodes};
use crate::wait::{self, Deadline, Slice};

fn queue_err(err: QueueError) -> PyErr {
    match err {
        QueueError::Full { .. } => Full::new_err(err.to_string()),
        QueueError::Empty { .. } | QueueError::Timeout { .. } => Empty::new_err(err.to_string()),
        QueueError::Closed { .. } => PyValueError::new_err(err.to_string()),
        QueueError::Other(e) => errors::to_py(&e),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

fn wrong_item(code: &str, err: &PyErr) -> PyErr {
    PyTypeError::new_err(format!(
        "a PodQueue of typecode {code:?} holds numbers of that type: {err}"
    ))
}

/// `block` and `timeout` as Python gives them: `None` for a call that does not wait.
fn deadline(block: bool, timeout: Option<f64>) -> PyResult<Option<Deadline>> {
    block
        .then(|| Deadline::from_seconds(timeout, false))
        .transpose()
}

/// Puts `values` in order, waiting for room until `deadline` (not at all without one) in
/// slices, with the GIL released; returns how many it put.
fn put_values<T: Pod + Send + Sync>(
    py: Python<'_>,
    queue: &memspace::PodQueue<T>,
    values: &[T],
    deadline: Option<Deadline>,
) -> PyResult<usize> {
    let mut put = 0;
    loop {
        let slice = match deadline {
            None => Duration::ZERO,
            Some(deadline) => match deadline.next_slice() {
                Some(slice) => slice,
                None => return Ok(put),
            },
        };
        put += py
            .detach(|| queue.put_many_timeout(&values[put..], slice))
            .map_err(queue_err)?;
        if put == values.len() || deadline.is_none() {
            return Ok(put);
        }
        py.check_signals()?;
    }
}

/// Takes up to `max` items, waiting for the first until `deadline` (not at all without one).
fn get_values<T: Pod + Send>(
    py: Python<'_>,
    queue: &memspace::PodQueue<T>,
    max: usize,
    deadline: Option<Deadline>,
) -> PyResult<Vec<T>> {
    let Some(deadline) = deadline else {
        return py.detach(|| queue.try_get_many(max)).map_err(queue_err);
    };
    wait::wait(
        py,
        deadline,
        |slice| match queue.get_many_timeout(max, slice) {
            Err(QueueError::Empty { .. } | QueueError::Timeout { .. }) => Slice::Again,
            other => Slice::Done(other),
        },
        queue_err,
    )?
    .ok_or_else(|| Empty::new_err(format!("queue `{}` is empty", queue.name())))
}

macro_rules! pod_queues {
    ($($code:literal => $variant:ident($t:ty)),+ $(,)?) => {
        /// A memspace `PodQueue` of the type a typecode names.
        enum Typed {
            $($variant(memspace::PodQueue<$t>),)+
        }

        impl Typed {
            const CODES: &'static str = concat!($($code),+);

            fn make(code: &str, name: Option<&str>, capacity: u64) -> PyResult<Self> {
                match code {
                    $($code => match name {
                        None => memspace::PodQueue::<$t>::new(capacity),
                        Some(name) => memspace::PodQueue::<$t>::create(name, capacity),
                    }
                    .map(Typed::$variant)
                    .map_err(|e| errors::to_py(&e)),)+
                    _ => Err(typecode::unknown("PodQueue", code, Self::CODES)),
                }
            }

            fn open(code: &str, name: &str) -> PyResult<Self> {
                match code {
                    $($code => memspace::PodQueue::<$t>::open(name)
                        .map(Typed::$variant)
                        .map_err(|e| errors::to_py(&e)),)+
                    _ => Err(typecode::unknown("PodQueue", code, Self::CODES)),
                }
            }

            /// Puts `obj` (a number), or with `many` the numbers of `obj` (a sequence), each
            /// checked to be of the queue's type before any is put; returns how many it put.
            fn put(
                &self,
                py: Python<'_>,
                obj: &Bound<'_, PyAny>,
                many: bool,
                deadline: Option<Deadline>,
            ) -> PyResult<usize> {
                match self {
                    $(Typed::$variant(queue) => {
                        let values: Vec<$t> = if many {
                            obj.extract().map_err(|err| wrong_item($code, &err))?
                        } else {
                            vec![obj.extract().map_err(|err| wrong_item($code, &err))?]
                        };
                        put_values(py, queue, &values, deadline)
                    })+
                }
            }

            /// Takes up to `max` numbers, as a list; one alone without `many`.
            fn get<'py>(
                &self,
                py: Python<'py>,
                max: usize,
                many: bool,
                deadline: Option<Deadline>,
            ) -> PyResult<Bound<'py, PyAny>> {
                match self {
                    $(Typed::$variant(queue) => {
                        let values = get_values(py, queue, max, deadline)?;
                        if many {
                            Ok(values.into_pyobject(py)?.into_any())
                        } else {
                            let value = values.first().copied().ok_or_else(|| {
                                Empty::new_err(format!("queue `{}` is empty", queue.name()))
                            })?;
                            Ok(value.into_pyobject(py)?.into_any())
                        }
                    })+
                }
            }
        }

        /// What every variant's queue answers alike.
        macro_rules! each {
            ($typed:expr, $queue:ident => $body:expr) => {
                match $typed {
                    $(Typed::$variant($queue) => $body,)+
                }
            };
        }
    };
}

with_typecodes!(pod_queues);

/// A bounded FIFO queue of numbers of one typecode, shared by processes, put and taken
/// without a lock.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct PodQueue {
    typecode: String,
    inner: Typed,
}

#[pymethods]
impl PodQueue {
    /// An anonymous queue of at least `capacity` numbers of `typecode` (rounded up to a power
    /// of two).
    #[new]
    #[pyo3(signature = (typecode, capacity = 1024))]
    fn new(typecode: &str, capacity: u64) -> PyResult<Self> {
        Ok(Self {
            typecode: typecode.to_owned(),
            inner: Typed::make(typecode, None, capacity)?,
        })
    }

    /// Creates the queue `name` (`FileExistsError` if it exists).
    #[staticmethod]
    #[pyo3(signature = (name, typecode, capacity = 1024))]
    fn create(name: &str, typecode: &str, capacity: u64) -> PyResult<Self> {
        Ok(Self {
            typecode: typecode.to_owned(),
            inner: Typed::make(typecode, Some(name), capacity)?,
        })
    }

    /// Opens the existing queue `name` of `typecode` (`FileNotFoundError` if there is none).
    #[staticmethod]
    fn open(name: &str, typecode: &str) -> PyResult<Self> {
        Ok(Self {
            typecode: typecode.to_owned(),
            inner: Typed::open(typecode, name)?,
        })
    }

    /// Puts the number `obj`, waiting for room if `block`, at most `timeout` seconds
    /// (`queue.Full` then).
    #[pyo3(signature = (obj, block = true, timeout = None))]
    fn put(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        match self.inner.put(py, obj, false, deadline(block, timeout)?)? {
            0 => Err(Full::new_err(format!("queue `{}` is full", self.name()))),
            _ => Ok(()),
        }
    }

    /// `put(obj, False)`.
    fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None)
    }

    /// Puts the numbers of `items` in order, waiting for room as `block` and `timeout` say;
    /// returns how many it put (all of them, unless the wait ended first).
    #[pyo3(signature = (items, block = true, timeout = None))]
    fn put_many(
        &self,
        py: Python<'_>,
        items: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        self.inner.put(py, items, true, deadline(block, timeout)?)
    }

    /// Takes the oldest number, waiting for one if `block`, at most `timeout` seconds
    /// (`queue.Empty` then).
    #[pyo3(signature = (block = true, timeout = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.inner.get(py, 1, false, deadline(block, timeout)?)
    }

    /// `get(False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None)
    }

    /// Takes up to `max` of the oldest numbers, as a list: waits for the first as `block` and
    /// `timeout` say (`queue.Empty`), then takes those ready after it.
    #[pyo3(signature = (max, block = true, timeout = None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if max == 0 {
            return Ok(pyo3::types::PyList::empty(py).into_any());
        }
        self.inner.get(py, max, true, deadline(block, timeout)?)
    }

    /// How many numbers wait in the queue.
    fn qsize(&self) -> u64 {
        each!(&self.inner, queue => queue.len())
    }

    /// Whether no number waits.
    fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue has no room.
    fn full(&self) -> bool {
        self.qsize() >= self.capacity()
    }

    /// How many numbers it holds at most.
    #[getter]
    fn capacity(&self) -> u64 {
        each!(&self.inner, queue => queue.capacity())
    }

    /// Closes the queue: puts fail (`ValueError`), and so do gets once it is empty; waiting
    /// puts and gets in every process wake to learn it.
    fn close(&self) -> PyResult<()> {
        each!(&self.inner, queue => queue.close()).map_err(queue_err)
    }

    /// Whether `close()` was called.
    fn is_closed(&self) -> bool {
        each!(&self.inner, queue => queue.is_closed())
    }

    /// The typecode.
    #[getter]
    fn typecode(&self) -> &str {
        &self.typecode
    }

    /// The queue's name.
    #[getter]
    fn name(&self) -> String {
        each!(&self.inner, queue => queue.name().as_str().to_owned())
    }

    /// Removes the queue's name (processes that have it open keep it).
    fn unlink(&self) -> PyResult<()> {
        each!(&self.inner, queue => queue.unlink()).map_err(|e| errors::to_py(&e))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        let name = each!(&self.inner, queue => crate::handle::transport(queue))?;
        crate::handle::reduce(
            py,
            "PodQueue",
            [
                name.into_pyobject(py)?.into_any(),
                self.typecode.as_str().into_pyobject(py)?.into_any(),
            ],
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "PodQueue({:?}, capacity={}, name={:?}, qsize={})",
            self.typecode,
            self.capacity(),
            self.name(),
            self.qsize()
        )
    }
}
