//! `Array(typecode, size_or_initializer)`: `multiprocessing.Array`'s API on a memspace
//! `SharedArray<T>` of the typecode's type, with its own `RLock` for `get_lock()`, and the
//! buffer protocol: `memoryview(a)` and `numpy.frombuffer(a, ...)` see the shared elements
//! themselves, not a copy.
//!
//! Reading or writing one element through the object (`a[i]`, `a[i] = v`) is one atomic
//! instruction. Through a `memoryview` or numpy it is a plain load or store, which no other
//! process sees half of for elements of 8 bytes or fewer, aligned (x86_64); several elements
//! together are consistent only under `get_lock()`, as with `multiprocessing.Array`.
//!
//! # Safety
//!
//! The one `unsafe` block fills the `Py_buffer` Python hands to `__getbuffer__` with a pointer
//! to the first element (`SharedArray::as_ptr`), the array's length in bytes, and pointers to
//! a static format string and to the shape and stride stored in this object. The view holds a
//! strong reference to this object (`obj`), which holds the array's handle, so the elements
//! stay mapped, and the shape and stride stay where they are (Python objects do not move),
//! until the view is released.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::ptr;

use pyo3::exceptions::{PyBufferError, PyIndexError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PySlice};

use crate::errors;
use crate::typecode::{self, WithLock};

macro_rules! arrays {
    ($($code:literal => $variant:ident($t:ty)),+ $(,)?) => {
        /// A memspace array of the type a typecode names.
        enum Typed {
            $($variant(memspace::SharedArray<$t>),)+
        }

        typecode::impl_typed!(Typed, SharedArray, "Array", $($code => $variant),+);

        impl Typed {
            const CODES: &'static str = concat!($($code),+);

            /// A new array: `size` zeros, or the items of `initializer`.
            fn new(code: &str, name: Option<&str>, init: &Bound<'_, PyAny>) -> PyResult<Self> {
                match code {
                    $($code => {
                        let made = if let Ok(size) = init.extract::<u64>() {
                            match name {
                                None => memspace::SharedArray::<$t>::new(size),
                                Some(name) => memspace::SharedArray::<$t>::create(name, size),
                            }
                        } else {
                            let values: Vec<$t> = init.extract().map_err(|err| {
                                PyTypeError::new_err(format!(
                                    "Array({code:?}, ...) takes a size or a sequence of \
                                     numbers of typecode {code:?}: {err}"
                                ))
                            })?;
                            match name {
                                None => memspace::SharedArray::<$t>::from_slice(&values),
                                Some(name) => {
                                    memspace::SharedArray::<$t>::create_from(name, &values)
                                }
                            }
                        };
                        made.map(Typed::$variant).map_err(|e| errors::to_py(&e))
                    })+
                    _ => Err(typecode::unknown("Array", code, Self::CODES)),
                }
            }

            fn len(&self) -> usize {
                match self {
                    $(Typed::$variant(a) => usize::try_from(a.len()).unwrap_or(usize::MAX),)+
                }
            }

            fn itemsize(&self) -> usize {
                match self {
                    $(Typed::$variant(_) => size_of::<$t>(),)+
                }
            }

            fn first(&self) -> *mut c_void {
                match self {
                    $(Typed::$variant(a) => a.as_ptr().cast(),)+
                }
            }

            /// The element at `index`, checked by the caller to be in range.
            fn get<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
                match self {
                    $(Typed::$variant(a) => {
                        let got = a.get(index as u64).map_err(|e| errors::to_py(&e))?;
                        Ok(got.into_pyobject(py)?.into_any())
                    })+
                }
            }

            fn set(&self, index: usize, value: &Bound<'_, PyAny>) -> PyResult<()> {
                match self {
                    $(Typed::$variant(a) => {
                        let value: $t = value.extract()?;
                        a.set(index as u64, value).map_err(|e| errors::to_py(&e))
                    })+
                }
            }
        }

        /// The buffer format of `code`: the typecode itself, as `struct` reads it.
        fn format(code: &str) -> &'static CStr {
            match code {
                $($code => {
                    const FORMAT: &CStr = match CStr::from_bytes_with_nul(
                        concat!($code, "\0").as_bytes(),
                    ) {
                        Ok(format) => format,
                        Err(_) => panic!("a typecode holds no NUL"),
                    };
                    FORMAT
                })+
                _ => c"B",
            }
        }
    };
}

typecode::with_typecodes!(arrays);

/// A fixed-length array of numbers shared by processes, as `multiprocessing.Array`.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Array {
    inner: WithLock<Typed>,
    /// The one dimension a buffer view reports, kept here for the view to point at.
    shape: [ffi::Py_ssize_t; 1],
    /// The distance between elements a buffer view reports.
    strides: [ffi::Py_ssize_t; 1],
}

impl Array {
    fn build(inner: WithLock<Typed>) -> PyResult<Self> {
        let size = |n: usize| {
            ffi::Py_ssize_t::try_from(n)
                .map_err(|_| PyValueError::new_err("the array is too long for a buffer view"))
        };
        let (len, itemsize) = (inner.typed.len(), inner.typed.itemsize());
        let shape = [size(len)?];
        let strides = [size(itemsize)?];
        size(len.saturating_mul(itemsize))?;
        Ok(Self {
            inner,
            shape,
            strides,
        })
    }

    /// `index` as a position in `0..len`, counting from the end when negative.
    fn position(&self, index: isize) -> PyResult<usize> {
        let len = self.inner.typed.len();
        let from_end = index < 0;
        let at = if from_end {
            len.checked_sub(index.unsigned_abs())
        } else {
            Some(index.unsigned_abs())
        };
        at.filter(|&at| at < len)
            .ok_or_else(|| PyIndexError::new_err("array index out of range"))
    }

    /// The positions a slice selects.
    fn positions(&self, slice: &Bound<'_, PySlice>) -> PyResult<Vec<usize>> {
        let len = isize::try_from(self.inner.typed.len()).unwrap_or(isize::MAX);
        let indices = slice.indices(len)?;
        let mut at = indices.start;
        let mut out = Vec::with_capacity(indices.slicelength);
        for _ in 0..indices.slicelength {
            out.push(at.unsigned_abs());
            at += indices.step;
        }
        Ok(out)
    }
}

typecode::with_lock_pymethods!(Array, "array", {
    /// An anonymous array of `typecode` ('i', 'd', ...): `size_or_initializer` zeros, or the
    /// numbers of a sequence.
    #[new]
    fn new(
        py: Python<'_>,
        typecode: &str,
        size_or_initializer: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let array = Typed::new(typecode, None, size_or_initializer)?;
        Self::build(WithLock::anonymous(py, typecode, array)?)
    }

    /// Creates the array `name` (and its lock `name.lock`).
    #[staticmethod]
    fn create(
        py: Python<'_>,
        name: &str,
        typecode: &str,
        size_or_initializer: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let array = Typed::new(typecode, Some(name), size_or_initializer)?;
        Self::build(WithLock::named(py, name, typecode, array)?)
    }

    /// Opens an array and its lock by the names they travel as.
    #[staticmethod]
    fn reopen(py: Python<'_>, typecode: &str, array: &str, lock: &str) -> PyResult<Self> {
        Self::build(WithLock::reopen(py, typecode, array, lock)?)
    }

    fn __len__(&self) -> usize {
        self.inner.typed.len()
    }

    /// `a[i]` (negative from the end), or a list for `a[i:j:k]`.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = index.cast::<PySlice>() {
            let items = self
                .positions(slice)?
                .into_iter()
                .map(|at| self.inner.typed.get(py, at))
                .collect::<PyResult<Vec<_>>>()?;
            return Ok(PyList::new(py, items)?.into_any());
        }
        self.inner.typed.get(py, self.position(index.extract()?)?)
    }

    /// `a[i] = v`, or `a[i:j:k] = values` with as many values as the slice selects.
    fn __setitem__(&self, index: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(slice) = index.cast::<PySlice>() {
            let at = self.positions(slice)?;
            let values: Vec<Bound<'_, PyAny>> = value.try_iter()?.collect::<PyResult<_>>()?;
            if values.len() != at.len() {
                return Err(PyValueError::new_err(format!(
                    "can only assign {} values to this slice of the array, not {} (an array's \
                     length is fixed)",
                    at.len(),
                    values.len()
                )));
            }
            return at
                .into_iter()
                .zip(&values)
                .try_for_each(|(at, value)| self.inner.typed.set(at, value));
        }
        self.inner
            .typed
            .set(self.position(index.extract()?)?, value)
    }

    /// The elements, as a list (read one by one: hold `get_lock()` for a consistent copy).
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = (0..self.inner.typed.len())
            .map(|at| self.inner.typed.get(py, at))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.tolist(py)?.as_any().try_iter()?.into_any())
    }

    /// The elements as a writable `memoryview`, without a copy (`multiprocessing`'s
    /// `get_obj()` returns the ctypes array this stands for).
    fn get_obj<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("builtins")?
            .getattr("memoryview")?
            .call1((slf,))
    }

    /// Exposes the elements to `memoryview`, numpy and other buffer consumers, writable.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no buffer view to fill"));
        }
        let this = slf.get();
        let wants = |flag: c_int| flags & flag == flag;
        let format = format(&this.inner.typecode);
        // SAFETY: `view` is the non-null `Py_buffer` Python passes for this call to fill. The
        // pointers put in it stay valid until the view is released, because the view holds a
        // strong reference to `slf` (module `# Safety`); the format string is static, and
        // Python never writes through `format`, `shape` or `strides`.
        unsafe {
            (*view).obj = slf.clone().into_any().into_ptr();
            (*view).buf = this.inner.typed.first();
            (*view).len = this.shape[0] * this.strides[0];
            (*view).readonly = 0;
            (*view).itemsize = this.strides[0];
            (*view).format = if wants(ffi::PyBUF_FORMAT) {
                format.as_ptr().cast_mut()
            } else {
                ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if wants(ffi::PyBUF_ND) {
                this.shape.as_ptr().cast_mut()
            } else {
                ptr::null_mut()
            };
            (*view).strides = if wants(ffi::PyBUF_STRIDES) {
                this.strides.as_ptr().cast_mut()
            } else {
                ptr::null_mut()
            };
            (*view).suboffsets = ptr::null_mut();
            (*view).internal = ptr::null_mut();
        }
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<memspace.Array({:?}, {})>",
            self.inner.typecode,
            self.tolist(py)?.repr()?
        ))
    }
});
