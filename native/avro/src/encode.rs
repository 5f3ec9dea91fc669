//! Writing an Avro binary body straight from the attributes of the event objects.
//!
//! Rule kept here: the bytes are the ones fastavro writes for the dict the Python converters
//! build (`bus/codec.py`), including the quirks that matter for valid events: booleans by
//! truth value, `int` written like `long`, blocks of arrays and maps as one counted block
//! followed by 0, an empty array or map as a lone 0. Errors are the Python ones the pure path
//! raises for the same mistake (a naive datetime is a `TypeError`, an unknown symbol a
//! `ValueError`).

use std::os::raw::c_int;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::program::{Op, Record};
use crate::time::micros_from_civil;
use crate::Tables;

pub fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    write_long(out, len as i64);
}

fn as_i64(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    // PyLong_AsLongLong takes ints (and bools) and __index__ objects, as fastavro's int64 does
    let n = unsafe { ffi::PyLong_AsLongLong(value.as_ptr()) };
    if n == -1 {
        if let Some(err) = PyErr::take(value.py()) {
            return Err(err);
        }
    }
    Ok(n)
}

fn as_f64(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    let x = unsafe { ffi::PyFloat_AsDouble(value.as_ptr()) };
    if x == -1.0 {
        if let Some(err) = PyErr::take(value.py()) {
            return Err(err);
        }
    }
    Ok(x)
}

impl Tables {
    pub fn write_record(
        &self,
        record: &Record,
        object: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
    ) -> PyResult<()> {
        let py = object.py();
        for (name, op) in record.names.iter().zip(record.ops.iter()) {
            let value = object.getattr(name.bind(py))?;
            self.write(op, &value, out)?;
        }
        Ok(())
    }

    fn write(&self, op: &Op, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        match op {
            Op::Null => {}
            Op::Boolean => out.push(u8::from(value.is_truthy()?)),
            Op::Int | Op::Long => write_long(out, as_i64(value)?),
            Op::Float => out.extend_from_slice(&(as_f64(value)? as f32).to_le_bytes()),
            Op::Double => out.extend_from_slice(&as_f64(value)?.to_le_bytes()),
            Op::Bytes => {
                if let Ok(bytes) = value.downcast::<PyBytes>() {
                    let data = bytes.as_bytes();
                    write_len(out, data.len());
                    out.extend_from_slice(data);
                } else if let Ok(array) = value.downcast::<PyByteArray>() {
                    let data = array.to_vec();
                    write_len(out, data.len());
                    out.extend_from_slice(&data);
                } else {
                    return Err(expected("bytes", value));
                }
            }
            Op::String => {
                let text = value
                    .downcast::<PyString>()
                    .map_err(|_| expected("str", value))?;
                let data = text.to_str()?.as_bytes();
                write_len(out, data.len());
                out.extend_from_slice(data);
            }
            Op::TimestampMicros => write_long(out, self.micros(value)?),
            Op::Enum(i) => write_long(out, self.symbol_index(*i, value)?),
            Op::Record(i) => self.write_record(&self.records[*i], value, out)?,
            Op::Optional(null_index, inner) => {
                if value.is_none() {
                    write_long(out, *null_index);
                } else {
                    write_long(out, 1 - *null_index);
                    self.write(inner, value, out)?;
                }
            }
            Op::Array(inner) => self.write_array(inner, value, out)?,
            Op::Map(inner) => self.write_map(inner, value, out)?,
        }
        Ok(())
    }

    fn write_array(&self, item: &Op, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        if let Ok(tuple) = value.downcast::<PyTuple>() {
            if !tuple.is_empty() {
                write_len(out, tuple.len());
                for element in tuple.iter() {
                    self.write(item, &element, out)?;
                }
            }
        } else if let Ok(list) = value.downcast::<PyList>() {
            let elements: Vec<Bound<'_, PyAny>> = list.iter().collect();
            if !elements.is_empty() {
                write_len(out, elements.len());
                for element in &elements {
                    self.write(item, element, out)?;
                }
            }
        } else {
            // any other sequence: fastavro takes len() then iterates
            let len = value.len()?;
            if len > 0 {
                write_len(out, len);
                for element in value.try_iter()? {
                    self.write(item, &element?, out)?;
                }
            }
        }
        out.push(0);
        Ok(())
    }

    fn write_map(&self, item: &Op, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        if let Ok(dict) = value.downcast::<PyDict>() {
            if !dict.is_empty() {
                write_len(out, dict.len());
                for (key, element) in dict.iter() {
                    self.write(&Op::String, &key, out)?;
                    self.write(item, &element, out)?;
                }
            }
        } else {
            // a Mapping that is not a dict: fastavro iterates .items()
            let mut pairs = Vec::new();
            for pair in value.call_method0("items")?.try_iter()? {
                pairs.push(pair?.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()?);
            }
            if !pairs.is_empty() {
                write_len(out, pairs.len());
                for (key, element) in &pairs {
                    self.write(&Op::String, key, out)?;
                    self.write(item, element, out)?;
                }
            }
        }
        out.push(0);
        Ok(())
    }

    /// Microseconds since the epoch of an aware datetime, as `(value - EPOCH) // 1µs` gives.
    fn micros(&self, value: &Bound<'_, PyAny>) -> PyResult<i64> {
        let p = value.as_ptr();
        unsafe {
            // Fast path: an exact datetime in UTC (what every event carries) read field by field.
            if ffi::PyDateTime_CheckExact(p) != 0
                && ffi::PyDateTime_DATE_GET_TZINFO(p) == self.utc.as_ptr()
            {
                let f = |x: c_int| i64::from(x);
                return Ok(micros_from_civil(
                    (
                        f(ffi::PyDateTime_GET_YEAR(p)),
                        f(ffi::PyDateTime_GET_MONTH(p)),
                        f(ffi::PyDateTime_GET_DAY(p)),
                    ),
                    (
                        f(ffi::PyDateTime_DATE_GET_HOUR(p)),
                        f(ffi::PyDateTime_DATE_GET_MINUTE(p)),
                        f(ffi::PyDateTime_DATE_GET_SECOND(p)),
                        f(ffi::PyDateTime_DATE_GET_MICROSECOND(p)),
                    ),
                ));
            }
        }
        // Other zones, subclasses, naive datetimes (TypeError) and non-datetimes: Python decides.
        let py = value.py();
        let delta = value.sub(self.epoch.bind(py))?;
        as_i64(&delta.floor_div(self.microsecond.bind(py))?)
    }

    fn symbol_index(&self, i: usize, value: &Bound<'_, PyAny>) -> PyResult<i64> {
        let definition = &self.enums[i];
        let p = value.as_ptr();
        // members first, by identity: no hashing, no string comparison
        for (index, member) in definition.members.iter().enumerate() {
            if let Some(member) = member {
                if member.as_ptr() == p {
                    return Ok(index as i64);
                }
            }
        }
        // then by equality to a symbol, as fastavro's symbols.index(value)
        let py = value.py();
        for (index, symbol) in definition.symbols.iter().enumerate() {
            if value.eq(symbol.bind(py))? {
                return Ok(index as i64);
            }
        }
        Err(PyValueError::new_err(format!(
            "{} is not a symbol of {}",
            value.repr()?,
            definition.name
        )))
    }
}

fn expected(kind: &str, value: &Bound<'_, PyAny>) -> PyErr {
    let type_name = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string());
    PyTypeError::new_err(format!("expected {}, got {}", kind, type_name))
}
