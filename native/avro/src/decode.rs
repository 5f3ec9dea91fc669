//! Reading an Avro binary body straight into event objects.
//!
//! Rules kept here: records are built as `object.__new__(cls)` plus the generic
//! `object.__setattr__` on each slot (the classes are frozen, slotted and have no
//! `__post_init__`), or by calling the class when it is not slotted; arrays become tuples,
//! enums their members, timestamps aware UTC datetimes. Nothing is trusted: a count, length
//! or index that the bytes cannot hold is a `Fail`, never a panic or a huge allocation.

use std::os::raw::c_char;
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDateTime, PyDict, PyTuple};

use crate::program::{min_size, Op, Record};
use crate::time::civil_from_micros;
use crate::Tables;

/// Why a body could not be read.
pub enum Fail {
    Truncated,
    Corrupt(String),
    Python(PyErr),
}

impl From<PyErr> for Fail {
    fn from(err: PyErr) -> Self {
        Fail::Python(err)
    }
}

type Read<T> = Result<T, Fail>;

pub struct Input<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if self.data.len() - self.pos < n {
            return Err(Fail::Truncated);
        }
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn long(&mut self) -> Read<i64> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = match self.data.get(self.pos) {
                Some(b) => *b,
                None => return Err(Fail::Truncated),
            };
            self.pos += 1;
            n |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok((n >> 1) as i64 ^ -((n & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return Err(Fail::Corrupt("varint longer than 10 bytes".to_string()));
            }
        }
    }

    fn length(&mut self) -> Read<usize> {
        let n = self.long()?;
        if n < 0 {
            return Err(Fail::Corrupt(format!("negative length {}", n)));
        }
        Ok(n as usize)
    }

    /// The item count of the next block of an array or map (0 at the end).
    fn block(&mut self) -> Read<usize> {
        let count = self.long()?;
        if count < 0 {
            self.long()?; // byte size of the block, which we do not need
            return count
                .checked_neg()
                .map(|c| c as usize)
                .ok_or_else(|| Fail::Corrupt("block count out of range".to_string()));
        }
        Ok(count as usize)
    }
}

unsafe fn owned<'py>(py: Python<'py>, p: *mut ffi::PyObject) -> Read<Bound<'py, PyAny>> {
    Ok(Bound::from_owned_ptr_or_err(py, p)?)
}

impl Tables {
    pub fn read_record<'py>(
        &self,
        py: Python<'py>,
        record: &Record,
        input: &mut Input<'_>,
    ) -> Read<Bound<'py, PyAny>> {
        let cls = record.cls.bind(py);
        if record.direct {
            let object = unsafe {
                let new = (*ptr::addr_of!(ffi::PyBaseObject_Type))
                    .tp_new
                    .expect("object has tp_new");
                owned(
                    py,
                    new(cls.as_ptr().cast(), self.empty.as_ptr(), ptr::null_mut()),
                )?
            };
            for (name, op) in record.names.iter().zip(record.ops.iter()) {
                let value = self.read(py, op, input)?;
                let status = unsafe {
                    ffi::PyObject_GenericSetAttr(object.as_ptr(), name.as_ptr(), value.as_ptr())
                };
                if status != 0 {
                    return Err(PyErr::fetch(py).into());
                }
            }
            Ok(object)
        } else {
            let kwargs = PyDict::new(py);
            for (name, op) in record.names.iter().zip(record.ops.iter()) {
                kwargs.set_item(name.bind(py), self.read(py, op, input)?)?;
            }
            Ok(cls.call((), Some(&kwargs))?)
        }
    }

    fn read<'py>(
        &self,
        py: Python<'py>,
        op: &Op,
        input: &mut Input<'_>,
    ) -> Read<Bound<'py, PyAny>> {
        Ok(match op {
            Op::Null => py.None().into_bound(py),
            Op::Boolean => {
                let byte = input.take(1)?[0];
                PyBool::new(py, byte != 0).to_owned().into_any()
            }
            Op::Int | Op::Long => {
                let n = input.long()?;
                unsafe { owned(py, ffi::PyLong_FromLongLong(n))? }
            }
            Op::Float => {
                let raw = input.take(4)?;
                let x = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                unsafe { owned(py, ffi::PyFloat_FromDouble(f64::from(x)))? }
            }
            Op::Double => {
                let raw = input.take(8)?;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(raw);
                unsafe { owned(py, ffi::PyFloat_FromDouble(f64::from_le_bytes(bytes)))? }
            }
            Op::Bytes => {
                let n = input.length()?;
                PyBytes::new(py, input.take(n)?).into_any()
            }
            Op::String => {
                let n = input.length()?;
                let raw = input.take(n)?;
                // strict UTF-8, as fastavro's bytes.decode(): a bad byte raises UnicodeDecodeError
                unsafe {
                    owned(
                        py,
                        ffi::PyUnicode_DecodeUTF8(
                            raw.as_ptr() as *const c_char,
                            raw.len() as ffi::Py_ssize_t,
                            ptr::null(),
                        ),
                    )?
                }
            }
            Op::TimestampMicros => self.timestamp(py, input.long()?)?,
            Op::Enum(i) => {
                let definition = &self.enums[*i];
                let index = input.long()?;
                let member = usize::try_from(index)
                    .ok()
                    .and_then(|i| definition.members.get(i));
                match member {
                    Some(Some(member)) => member.bind(py).clone(),
                    Some(None) => {
                        return Err(Fail::Corrupt(format!(
                            "symbol {} of {} has no Python member",
                            index, definition.name
                        )))
                    }
                    None => {
                        return Err(Fail::Corrupt(format!(
                            "enum index {} out of range for {} ({} symbols)",
                            index,
                            definition.name,
                            definition.members.len()
                        )))
                    }
                }
            }
            Op::Record(i) => self.read_record(py, &self.records[*i], input)?,
            Op::Optional(null_index, inner) => {
                let index = input.long()?;
                if index == *null_index {
                    py.None().into_bound(py)
                } else if index == 1 - *null_index {
                    self.read(py, inner, input)?
                } else {
                    return Err(Fail::Corrupt(format!(
                        "union index {} out of range (2 branches)",
                        index
                    )));
                }
            }
            Op::Array(item) => {
                let size = self.size(item);
                let mut items: Vec<Bound<'py, PyAny>> = Vec::new();
                loop {
                    let count = input.block()?;
                    if count == 0 {
                        break;
                    }
                    self.check_count(count, size, input)?;
                    items.reserve(count);
                    for _ in 0..count {
                        items.push(self.read(py, item, input)?);
                    }
                }
                PyTuple::new(py, items)?.into_any()
            }
            Op::Map(item) => {
                let size = 1 + self.size(item);
                let dict = PyDict::new(py);
                loop {
                    let count = input.block()?;
                    if count == 0 {
                        break;
                    }
                    self.check_count(count, size, input)?;
                    for _ in 0..count {
                        let key = self.read(py, &Op::String, input)?;
                        dict.set_item(key, self.read(py, item, input)?)?;
                    }
                }
                dict.into_any()
            }
        })
    }

    fn size(&self, op: &Op) -> usize {
        match op {
            Op::Record(i) => self.records[*i].min_size,
            _ => min_size(op, &[]),
        }
    }

    /// A block cannot hold more items than the bytes left allow (zero-sized items: a sane cap).
    fn check_count(&self, count: usize, item_size: usize, input: &Input<'_>) -> Read<()> {
        if item_size == 0 {
            if count > 1 << 20 {
                return Err(Fail::Corrupt(format!("block of {} empty items", count)));
            }
        } else if count > input.remaining() / item_size {
            return Err(Fail::Truncated);
        }
        Ok(())
    }

    fn timestamp<'py>(&self, py: Python<'py>, micros: i64) -> Read<Bound<'py, PyAny>> {
        let c = civil_from_micros(micros);
        if !(1..=9999).contains(&c.year) {
            return Err(Fail::Corrupt(format!(
                "timestamp {} µs is outside the datetime range",
                micros
            )));
        }
        let value = PyDateTime::new(
            py,
            c.year as i32,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.micro,
            Some(self.utc.bind(py)),
        )?;
        Ok(value.into_any())
    }
}
