//! The `memspace._memspace` extension module: memspace's locks, lists, queues and values for
//! Python, with Python's names and protocols. The `memspace` package (python/memspace) wraps
//! it: `SharedList` becomes a `collections.abc.MutableSequence` there, and every object
//! pickles as a reference to its segment.

mod array;
mod collection;
mod convert;
mod dict;
mod errors;
mod handle;
mod list;
mod lock;
mod pod_queue;
mod queue;
mod sync;
mod typecode;
mod value;
mod wait;

use pyo3::prelude::*;

/// The module: its classes and exceptions.
#[pymodule]
fn _memspace(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<lock::Lock>()?;
    m.add_class::<lock::RLock>()?;
    m.add_class::<list::SharedList>()?;
    m.add_class::<dict::SharedDict>()?;
    m.add_class::<queue::Queue>()?;
    m.add_class::<pod_queue::PodQueue>()?;
    m.add_class::<value::Value>()?;
    m.add_class::<array::Array>()?;
    m.add_class::<sync::Event>()?;
    m.add_class::<sync::Semaphore>()?;
    m.add_class::<sync::Barrier>()?;
    m.add_class::<sync::Condition>()?;
    m.add("OwnerDied", m.py().get_type::<errors::OwnerDied>())?;
    m.add("PICKLE_EXT_TYPE", convert::PICKLE_EXT)?;
    // The baselines of `memspace bench`, which `memspace._baselines` runs as its own code.
    m.add(
        "BASELINES_SCRIPT",
        include_str!("../../memspace-bench/bench_baselines.py"),
    )?;
    Ok(())
}
