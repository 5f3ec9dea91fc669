//! `ecpds_avro._native`: the Avro single-object codec of ecpds events, compiled.
//!
//! A `Codec` is built once from a program (records, enums and events, as compiled from the
//! schemas by `ecpds_avro.program`) and then encodes an event object to
//! `C3 01 + fingerprint + body` and decodes such bytes back to an event object, with no
//! intermediate dict. Rule kept here: the bytes are exactly those of the fastavro path in
//! `bus/codec.py`; a payload this codec does not know (bad marker, fingerprint of another or
//! an earlier schema, not `bytes`) decodes to `None` so the caller's own path decides, and a
//! known payload that is wrong raises the caller's error class saying what is wrong.

mod decode;
mod encode;
mod murmur;
mod program;
mod time;

use std::collections::HashMap;

use pyo3::exceptions::{
    PyIndexError, PyKeyError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDateTime, PyDelta, PyTuple, PyType, PyTzInfo};

use crate::decode::{Fail, Input};
use crate::program::{parse_enum, parse_record, EnumDef, Record};

const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_SIZE: usize = 10;

/// What encoding and decoding share: the record and enum tables and a few Python constants.
pub struct Tables {
    pub records: Vec<Record>,
    pub enums: Vec<EnumDef>,
    pub utc: Py<PyTzInfo>,
    pub epoch: PyObject,
    pub microsecond: PyObject,
    pub empty: Py<PyTuple>,
}

struct Writer {
    header: [u8; HEADER_SIZE],
    record: usize,
    // keeps the class alive: the writers are looked up by its address
    _cls: Py<PyType>,
}

/// Encoder and decoder of the events of one catalogue.
#[pyclass(frozen, module = "ecpds_avro._native")]
pub struct Codec {
    tables: Tables,
    writers: HashMap<usize, Writer>,
    readers: HashMap<[u8; 8], usize>,
    error: Py<PyType>,
}

#[pymethods]
impl Codec {
    /// `records`: (full name, class, direct, field names, field programs) in dependency order;
    /// `enums`: (full name, symbols, members); `events`: (class, 8-byte fingerprint, record
    /// index); `error`: the exception class raised for a corrupt payload.
    #[new]
    fn new(
        py: Python<'_>,
        records: &Bound<'_, PyAny>,
        enums: &Bound<'_, PyAny>,
        events: &Bound<'_, PyAny>,
        error: &Bound<'_, PyType>,
    ) -> PyResult<Self> {
        unsafe {
            ffi::PyDateTime_IMPORT();
            if ffi::PyDateTimeAPI().is_null() {
                return Err(
                    PyErr::take(py).unwrap_or_else(|| PyRuntimeError::new_err("no datetime C API"))
                );
            }
        }
        let utc = PyTzInfo::utc(py)?.to_owned();
        let epoch = PyDateTime::new(py, 1970, 1, 1, 0, 0, 0, 0, Some(&utc))?;
        let microsecond = PyDelta::new(py, 0, 0, 1, false)?;

        let mut enum_table = Vec::new();
        for item in enums.try_iter()? {
            enum_table.push(parse_enum(py, &item?)?);
        }
        let mut record_table: Vec<Record> = Vec::new();
        let mut sizes = Vec::new();
        for item in records.try_iter()? {
            let record = parse_record(py, &item?, enum_table.len(), &sizes)?;
            sizes.push(record.min_size);
            record_table.push(record);
        }
        let mut writers = HashMap::new();
        let mut readers = HashMap::new();
        for item in events.try_iter()? {
            let (cls, fingerprint, record): (Bound<'_, PyType>, Vec<u8>, usize) =
                item?.extract()?;
            if fingerprint.len() != 8 {
                return Err(PyValueError::new_err("a fingerprint is 8 bytes"));
            }
            match record_table.get(record) {
                Some(r) if r.cls.as_ptr() == cls.as_ptr() => {}
                _ => {
                    return Err(PyValueError::new_err(
                        "event record index names another class",
                    ))
                }
            }
            let mut header = [0u8; HEADER_SIZE];
            header[..2].copy_from_slice(&MARKER);
            header[2..].copy_from_slice(&fingerprint);
            let mut key = [0u8; 8];
            key.copy_from_slice(&fingerprint);
            if readers.insert(key, record).is_some() {
                return Err(PyValueError::new_err("two events with one fingerprint"));
            }
            let address = cls.as_ptr() as usize;
            let writer = Writer {
                header,
                record,
                _cls: cls.unbind(),
            };
            if writers.insert(address, writer).is_some() {
                return Err(PyValueError::new_err("one class for two events"));
            }
        }
        Ok(Codec {
            tables: Tables {
                records: record_table,
                enums: enum_table,
                utc: utc.unbind(),
                epoch: epoch.into_any().unbind(),
                microsecond: microsecond.into_any().unbind(),
                empty: PyTuple::empty(py).unbind(),
            },
            writers,
            readers,
            error: error.clone().unbind(),
        })
    }

    /// The single-object encoding of an event (`TypeError` for a class it does not know).
    fn encode<'py>(&self, event: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let py = event.py();
        let key = unsafe { ffi::Py_TYPE(event.as_ptr()) } as usize;
        let writer = match self.writers.get(&key) {
            Some(writer) => writer,
            None => {
                let name = event.get_type().name()?;
                return Err(PyTypeError::new_err(format!(
                    "{} is not an ecpds event",
                    name
                )));
            }
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&writer.header);
        let record = &self.tables.records[writer.record];
        self.tables.write_record(record, event, &mut out)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The event in a payload, or `None` when the payload is not one of this codec's events.
    fn decode<'py>(&self, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = data.py();
        let bytes = match data.downcast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes(),
            Err(_) => return Ok(py.None().into_bound(py)),
        };
        if bytes.len() < HEADER_SIZE || bytes[..2] != MARKER {
            return Ok(py.None().into_bound(py));
        }
        let mut key = [0u8; 8];
        key.copy_from_slice(&bytes[2..HEADER_SIZE]);
        let record = match self.readers.get(&key) {
            Some(index) => &self.tables.records[*index],
            None => return Ok(py.None().into_bound(py)),
        };
        let mut input = Input {
            data: bytes,
            pos: HEADER_SIZE,
        };
        let event = self
            .tables
            .read_record(py, record, &mut input)
            .map_err(|fail| self.failure(py, record, fail))?;
        if input.pos != bytes.len() {
            let extra = bytes.len() - input.pos;
            let why = format!("{} bytes after the record", extra);
            return Err(self.failure(py, record, Fail::Corrupt(why)));
        }
        Ok(event)
    }
}

impl Codec {
    /// The caller's error for a payload that cannot be read, as the fastavro path words it.
    fn failure(&self, py: Python<'_>, record: &Record, fail: Fail) -> PyErr {
        let error = self.error.bind(py).clone();
        match fail {
            Fail::Truncated => PyErr::from_type(
                error,
                format!("{}: truncated body (it ends inside a value)", record.name),
            ),
            Fail::Corrupt(why) => {
                PyErr::from_type(error, format!("{}: corrupt body ({})", record.name, why))
            }
            Fail::Python(err) => {
                let corrupt = err.is_instance_of::<PyValueError>(py)
                    || err.is_instance_of::<PyTypeError>(py)
                    || err.is_instance_of::<PyIndexError>(py)
                    || err.is_instance_of::<PyKeyError>(py)
                    || err.is_instance_of::<PyOverflowError>(py);
                if !corrupt {
                    return err;
                }
                let repr = err
                    .value(py)
                    .repr()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| "?".to_string());
                let new =
                    PyErr::from_type(error, format!("{}: corrupt body ({})", record.name, repr));
                new.set_cause(py, Some(err));
                new
            }
        }
    }
}

/// Kafka's murmur2 hash of a key (see `murmur`).
#[pyfunction]
fn murmur2(data: &[u8]) -> u32 {
    murmur::murmur2(data)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Codec>()?;
    m.add_function(wrap_pyfunction!(murmur2, m)?)?;
    Ok(())
}
