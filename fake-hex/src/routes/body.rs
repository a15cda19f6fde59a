//! Reading JSON request bodies field by field. Each getter checks what the spec requires of the
//! field (present, of the right type) and answers a 400 in the operation's error style naming
//! the field by its path (`body.sharing.upsert.users[0].access`) when it is wrong.

use serde_json::{Map, Value};

use crate::errors::{HexError, Style};

/// A JSON object from a request body, and where it sits in the body.
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    map: Map<String, Value>,
    path: String,
    style: Style,
    trace: String,
}

impl Fields {
    pub(crate) fn new(map: Map<String, Value>, path: &str, style: Style, trace: &str) -> Self {
        Fields { map, path: path.to_owned(), style, trace: trace.to_owned() }
    }

    /// A 400 about `name` of this object.
    pub(crate) fn bad(&self, name: &str, problem: &str) -> HexError {
        HexError::bad_request(self.style, format!("{}.{name} {problem}", self.path), &self.trace)
    }

    /// The raw value of `name`, if present (null counts as present).
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// Whether `name` is present and not null.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| !v.is_null())
    }

    /// A required string.
    pub(crate) fn str(&self, name: &str) -> Result<String, HexError> {
        self.opt_str(name)?.ok_or_else(|| self.bad(name, "is required"))
    }

    /// A required string of at least one character.
    pub(crate) fn nonempty(&self, name: &str) -> Result<String, HexError> {
        let value = self.str(name)?;
        if value.is_empty() {
            return Err(self.bad(name, "must not be empty"));
        }
        Ok(value)
    }

    /// An optional string (absent or null: `None`).
    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<String>, HexError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(name, "must be a string")),
        }
    }

    /// A nullable string where absence and null differ: `None` absent, `Some(None)` null.
    pub(crate) fn nullable_str(&self, name: &str) -> Result<Option<Option<String>>, HexError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(self.bad(name, "must be a string or null")),
        }
    }

    /// A string that must be one of `allowed`, if present.
    pub(crate) fn opt_enum(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, HexError> {
        match self.opt_str(name)? {
            Some(value) if !allowed.contains(&value.as_str()) => {
                Err(self.bad(name, &format!("must be one of {}", allowed.join(", "))))
            }
            other => Ok(other),
        }
    }

    /// A required string that must be one of `allowed`.
    pub(crate) fn enumerated(&self, name: &str, allowed: &[&str]) -> Result<String, HexError> {
        self.opt_enum(name, allowed)?.ok_or_else(|| self.bad(name, "is required"))
    }

    /// An optional boolean.
    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, HexError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(name, "must be a boolean")),
        }
    }

    /// An optional number.
    pub(crate) fn opt_number(&self, name: &str) -> Result<Option<f64>, HexError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(self.bad(name, "must be a number")),
        }
    }

    /// An optional object.
    pub(crate) fn opt_object(&self, name: &str) -> Result<Option<Fields>, HexError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(self.nested(map.clone(), format!("{}.{name}", self.path)))),
            Some(_) => Err(self.bad(name, "must be an object")),
        }
    }

    /// A required object.
    pub(crate) fn object(&self, name: &str) -> Result<Fields, HexError> {
        self.opt_object(name)?.ok_or_else(|| self.bad(name, "is required"))
    }

    /// An optional array, each item an object.
    pub(crate) fn opt_objects(&self, name: &str) -> Result<Option<Vec<Fields>>, HexError> {
        let Some(items) = self.opt_array(name)? else { return Ok(None) };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(self.nested(map, format!("{}.{name}[{i}]", self.path))),
                _ => Err(self.bad(&format!("{name}[{i}]"), "must be an object")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A required array of objects.
    pub(crate) fn objects(&self, name: &str) -> Result<Vec<Fields>, HexError> {
        self.opt_objects(name)?.ok_or_else(|| self.bad(name, "is required"))
    }

    /// An optional array of strings.
    pub(crate) fn opt_strings(&self, name: &str) -> Result<Option<Vec<String>>, HexError> {
        let Some(items) = self.opt_array(name)? else { return Ok(None) };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(self.bad(name, "must be an array of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Checks that array `name`, if present, has at most `max` items.
    pub(crate) fn check_max_items(&self, name: &str, max: usize) -> Result<(), HexError> {
        match self.map.get(name) {
            Some(Value::Array(items)) if items.len() > max => {
                Err(self.bad(name, &format!("must have at most {max} items")))
            }
            _ => Ok(()),
        }
    }

    fn opt_array(&self, name: &str) -> Result<Option<Vec<Value>>, HexError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.clone())),
            Some(_) => Err(self.bad(name, "must be an array")),
        }
    }

    fn nested(&self, map: Map<String, Value>, path: String) -> Fields {
        Fields { map, path, style: self.style, trace: self.trace.clone() }
    }

    /// The object itself.
    pub(crate) fn into_map(self) -> Map<String, Value> {
        self.map
    }
}
