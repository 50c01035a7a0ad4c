//! A serde `Deserializer` over a JSON value the browser parsed. Unlike
//! serde-wasm-bindgen's, its error carries no message: the page never shows
//! a decoding error's text ("the server's answer was not understood"), and
//! not formatting one keeps serde's message code (and float formatting) out
//! of the bundle.

use js_sys::{Array, Object, Reflect};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use wasm_bindgen::{JsCast, JsValue};

/// The value did not fit the type.
#[derive(Debug)]
pub struct Error;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the JSON does not fit")
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Error
    }
}

/// Deserializes `T` from a parsed JSON value.
pub fn from_value<T: de::DeserializeOwned>(value: JsValue) -> Option<T> {
    T::deserialize(Value(value)).ok()
}

struct Value(JsValue);

impl<'de> de::Deserializer<'de> for Value {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let x = self.0;
        if x.is_null() || x.is_undefined() {
            v.visit_unit()
        } else if let Some(b) = x.as_bool() {
            v.visit_bool(b)
        } else if let Some(n) = x.as_f64() {
            if n.fract() == 0.0 && (0.0..9.0e15).contains(&n) {
                v.visit_u64(n as u64)
            } else if n.fract() == 0.0 && n > -9.0e15 && n < 0.0 {
                v.visit_i64(n as i64)
            } else {
                v.visit_f64(n)
            }
        } else if let Some(s) = x.as_string() {
            v.visit_string(s)
        } else if Array::is_array(&x) {
            v.visit_seq(Seq(Array::from(&x).to_vec().into_iter()))
        } else if x.is_object() {
            let keys = Object::keys(x.unchecked_ref::<Object>()).to_vec();
            v.visit_map(Map {
                object: x,
                keys: keys.into_iter(),
                value: None,
            })
        } else {
            Err(Error)
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.0.is_null() || self.0.is_undefined() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    /// Enums are unit variants written as their names.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.0.as_string() {
            Some(s) => v.visit_enum(s.into_deserializer()),
            None => Err(Error),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Seq(std::vec::IntoIter<JsValue>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.0.next() {
            Some(x) => seed.deserialize(Value(x)).map(Some),
            None => Ok(None),
        }
    }
}

struct Map {
    object: JsValue,
    keys: std::vec::IntoIter<JsValue>,
    value: Option<JsValue>,
}

impl<'de> MapAccess<'de> for Map {
    type Error = Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some(key) = self.keys.next() else {
            return Ok(None);
        };
        self.value = Some(Reflect::get(&self.object, &key).map_err(|_| Error)?);
        let key = key.as_string().ok_or(Error)?;
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        seed.deserialize(Value(self.value.take().ok_or(Error)?))
    }
}
