//! The compiled form of the schemas: what the Python side hands over once, parsed into Rust.
//!
//! A program is a tree of tuples whose first item names the operation (see
//! `python/ecpds_avro/program.py`). Records and enums live in tables and are referred to by
//! index, so a type shared by many events (the envelope) is parsed once.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

pub enum Op {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    TimestampMicros,
    Enum(usize),
    Record(usize),
    /// `[null, X]` or `[X, null]`: `null_index` is the branch index of null (0 or 1).
    Optional(i64, Box<Op>),
    Array(Box<Op>),
    Map(Box<Op>),
}

pub struct Record {
    pub name: String,
    pub cls: Py<PyType>,
    /// Build with `object.__new__` and fill the slots (a slotted class without `__init__` work);
    /// otherwise call the class with keyword arguments.
    pub direct: bool,
    pub names: Vec<Py<PyString>>,
    pub ops: Vec<Op>,
    /// Fewest body bytes a value can take: bounds the item count a corrupt array can claim.
    pub min_size: usize,
}

pub struct EnumDef {
    pub name: String,
    pub symbols: Vec<Py<PyString>>,
    /// The Python member for each symbol (None when the class has no such member).
    pub members: Vec<Option<PyObject>>,
}

fn invalid(what: &str, program: &Bound<'_, PyAny>) -> PyErr {
    PyValueError::new_err(format!("invalid codec program ({}): {}", what, program))
}

pub fn parse_op(program: &Bound<'_, PyAny>, records: usize, enums: usize) -> PyResult<Op> {
    let tuple = program
        .downcast::<PyTuple>()
        .map_err(|_| invalid("not a tuple", program))?;
    let tag: String = tuple.get_item(0)?.extract()?;
    let index = |position: usize, limit: usize| -> PyResult<usize> {
        let i: usize = tuple.get_item(position)?.extract()?;
        if i >= limit {
            return Err(invalid("index out of range", program));
        }
        Ok(i)
    };
    let inner = |position: usize| -> PyResult<Box<Op>> {
        Ok(Box::new(parse_op(
            &tuple.get_item(position)?,
            records,
            enums,
        )?))
    };
    Ok(match tag.as_str() {
        "null" => Op::Null,
        "boolean" => Op::Boolean,
        "int" => Op::Int,
        "long" => Op::Long,
        "float" => Op::Float,
        "double" => Op::Double,
        "bytes" => Op::Bytes,
        "string" => Op::String,
        "timestamp-micros" => Op::TimestampMicros,
        "enum" => Op::Enum(index(1, enums)?),
        "record" => Op::Record(index(1, records)?),
        "optional" => {
            let null_index: i64 = tuple.get_item(1)?.extract()?;
            if null_index != 0 && null_index != 1 {
                return Err(invalid("null branch must be 0 or 1", program));
            }
            Op::Optional(null_index, inner(2)?)
        }
        "array" => Op::Array(inner(1)?),
        "map" => Op::Map(inner(1)?),
        _ => return Err(invalid("unknown operation", program)),
    })
}

/// Fewest bytes a value of `op` takes in a body (records already measured are in `sizes`).
pub fn min_size(op: &Op, sizes: &[usize]) -> usize {
    match op {
        Op::Null => 0,
        Op::Float => 4,
        Op::Double => 8,
        Op::Record(i) => sizes[*i],
        _ => 1,
    }
}

pub fn parse_record(
    py: Python<'_>,
    item: &Bound<'_, PyAny>,
    enums: usize,
    sizes: &[usize],
) -> PyResult<Record> {
    // (full name, class, direct, field names, field programs)
    let (name, cls, direct, names, ops): (
        String,
        Bound<'_, PyType>,
        bool,
        Bound<'_, PyTuple>,
        Bound<'_, PyTuple>,
    ) = item.extract()?;
    if names.len() != ops.len() {
        return Err(invalid("field names and programs differ in number", item));
    }
    let mut parsed = Vec::with_capacity(ops.len());
    for op in ops.iter() {
        // only records before this one in the table: no recursion, so decoding never loops
        parsed.push(parse_op(&op, sizes.len(), enums)?);
    }
    let mut field_names = Vec::with_capacity(names.len());
    for field in names.iter() {
        let field: String = field.extract()?;
        field_names.push(PyString::intern(py, &field).unbind());
    }
    let min = parsed.iter().map(|op| min_size(op, sizes)).sum();
    Ok(Record {
        name,
        cls: cls.unbind(),
        direct,
        names: field_names,
        ops: parsed,
        min_size: min,
    })
}

pub fn parse_enum(py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<EnumDef> {
    // (full name, symbols, members)
    let (name, symbols, members): (String, Bound<'_, PyTuple>, Bound<'_, PyTuple>) =
        item.extract()?;
    if symbols.len() != members.len() {
        return Err(invalid("symbols and members differ in number", item));
    }
    let mut symbol_list = Vec::with_capacity(symbols.len());
    for symbol in symbols.iter() {
        let symbol: String = symbol.extract()?;
        symbol_list.push(PyString::intern(py, &symbol).unbind());
    }
    let member_list = members
        .iter()
        .map(|m| if m.is_none() { None } else { Some(m.unbind()) })
        .collect();
    Ok(EnumDef {
        name,
        symbols: symbol_list,
        members: member_list,
    })
}
