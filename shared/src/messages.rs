//! `FieldMessages`: messages keyed by field name, as in a `Report`, an error
//! body's `errors` and `validate_new_app`.
//!
//! It serializes exactly as a `BTreeMap<String, Vec<String>>` would (a JSON
//! object of string arrays, keys in order), but it is a sorted list. A form has
//! a handful of fields, so a binary search over a `Vec` is as fast as a B-tree,
//! and it keeps the B-tree's code (13 KB of wasm) out of the browser bundle.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Messages keyed by field name, keys kept in order and unique.
///
/// [`push`](Self::push) keeps at most [`MAX_PER_FIELD`] messages for a field
/// and then one line that counts the rest: a message naming a million
/// unreadable recipients is answered with a few lines, not with a hundred
/// megabytes of them.
#[derive(Debug, Clone, Default)]
pub struct FieldMessages(Vec<(String, Vec<String>)>, Vec<(String, usize)>);

/// Equal when they say the same: how a count line came to be is not compared.
impl PartialEq for FieldMessages {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for FieldMessages {}

/// The most messages [`FieldMessages::push`] lists for one field.
pub const MAX_PER_FIELD: usize = 20;

impl FieldMessages {
    /// No messages.
    pub const fn new() -> Self {
        Self(Vec::new(), Vec::new())
    }

    /// True when no field has a message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many fields have messages.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The messages of one field.
    pub fn get(&self, key: &str) -> Option<&Vec<String>> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether a field has messages.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Adds one message to a field, after the ones it has; past
    /// [`MAX_PER_FIELD`], the field's last line counts the ones left out.
    pub fn push(&mut self, key: &str, message: impl Into<String>) {
        match self.find(key) {
            Ok(i) if self.0[i].1.len() < MAX_PER_FIELD => self.0[i].1.push(message.into()),
            Ok(i) => {
                // The field's last line is the count once there is one.
                let counted = self.1.iter().position(|(k, _)| k == key);
                let more = match counted {
                    Some(j) => {
                        self.1[j].1 += 1;
                        self.1[j].1
                    }
                    None => {
                        self.1.push((key.to_string(), 1));
                        1
                    }
                };
                let line = format!("… and {more} more, not listed.");
                let list = &mut self.0[i].1;
                if counted.is_some() {
                    list.pop();
                }
                list.push(line);
            }
            Err(i) => self.0.insert(i, (key.to_string(), vec![message.into()])),
        }
    }

    /// Sets a field's messages, giving back the ones it replaced.
    pub fn insert(&mut self, key: String, messages: Vec<String>) -> Option<Vec<String>> {
        self.1.retain(|(k, _)| *k != key);
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, messages)),
            Err(i) => {
                self.0.insert(i, (key, messages));
                None
            }
        }
    }

    /// Takes a field's messages out.
    pub fn remove(&mut self, key: &str) -> Option<Vec<String>> {
        self.1.retain(|(k, _)| k != key);
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The fields and their messages, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Drops every message.
    pub fn clear(&mut self) {
        self.0.clear();
        self.1.clear();
    }

    /// The messages, field by field, taken out.
    pub fn into_values(self) -> impl Iterator<Item = Vec<String>> {
        self.0.into_iter().map(|(_, v)| v)
    }

    /// The field names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The messages, field by field.
    pub fn values(&self) -> impl Iterator<Item = &Vec<String>> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<K: Into<String>> Extend<(K, Vec<String>)> for FieldMessages {
    /// Like a map's `extend`: a field given again replaces its messages.
    fn extend<I: IntoIterator<Item = (K, Vec<String>)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k.into(), v);
        }
    }
}

impl<K: Into<String>> FromIterator<(K, Vec<String>)> for FieldMessages {
    fn from_iter<I: IntoIterator<Item = (K, Vec<String>)>>(iter: I) -> Self {
        let mut m = Self::new();
        m.extend(iter);
        m
    }
}

impl<K: Into<String>, const N: usize> From<[(K, Vec<String>); N]> for FieldMessages {
    fn from(entries: [(K, Vec<String>); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl IntoIterator for FieldMessages {
    type Item = (String, Vec<String>);
    type IntoIter = std::vec::IntoIter<(String, Vec<String>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldMessages {
    type Item = (&'a String, &'a Vec<String>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Vec<String>)>,
        fn(&'a (String, Vec<String>)) -> (&'a String, &'a Vec<String>),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&str> for FieldMessages {
    type Output = Vec<String>;
    /// The messages of a field that has some; panics otherwise, like a map.
    fn index(&self, key: &str) -> &Vec<String> {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no messages for field {key:?}"),
        }
    }
}

impl Serialize for FieldMessages {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for FieldMessages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = FieldMessages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of field names to lists of messages")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut m = FieldMessages::new();
                while let Some((k, v)) = access.next_entry::<String, Vec<String>>()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn serializes_like_a_btree_map_in_key_order() {
        let mut m = FieldMessages::new();
        let mut b: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, msg) in [
            ("to", "a"),
            ("from", "b"),
            ("to", "c"),
            ("cc", "d"),
            ("a", "e"),
        ] {
            m.push(k, msg);
            b.entry(k.to_string()).or_default().push(msg.to_string());
        }
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"a":["e"],"cc":["d"],"from":["b"],"to":["a","c"]}"#
        );
        assert_eq!(
            m.keys().cloned().collect::<Vec<_>>(),
            v(&["a", "cc", "from", "to"])
        );
    }

    #[test]
    fn reads_back_what_it_writes_and_keeps_the_last_duplicate() {
        let m = FieldMessages::from([("x", v(&["1"])), ("b", v(&["2", "3"]))]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<FieldMessages>(&json).unwrap(), m);
        let dup: FieldMessages = serde_json::from_str(r#"{"k":["old"],"k":["new"]}"#).unwrap();
        assert_eq!(dup.get("k"), Some(&v(&["new"])));
        assert!(serde_json::from_str::<FieldMessages>(r#"{"k":"not a list"}"#).is_err());
        assert!(serde_json::from_str::<FieldMessages>("[]").is_err());
    }

    #[test]
    fn a_field_lists_twenty_messages_and_counts_the_rest() {
        let mut m = FieldMessages::new();
        for n in 0..1_000_000 {
            m.push("to", format!("Address {n} of to cannot be read."));
        }
        m.push("from", "The From address is empty.");
        let to = &m["to"];
        assert_eq!(to.len(), MAX_PER_FIELD + 1);
        assert_eq!(to[0], "Address 0 of to cannot be read.");
        assert_eq!(to[19], "Address 19 of to cannot be read.");
        assert_eq!(to[20], "… and 999980 more, not listed.");
        assert_eq!(m["from"].len(), 1);
        // Set again, a field counts afresh.
        m.insert("to".into(), v(&["one"]));
        for _ in 0..MAX_PER_FIELD {
            m.push("to", "again");
        }
        assert_eq!(m["to"].last().unwrap(), "… and 1 more, not listed.");
        // A field set with more than 20 (read back from JSON) loses none of them.
        let many: Vec<String> = (0..25).map(|n| n.to_string()).collect();
        m.insert("cc".into(), many.clone());
        m.push("cc", "25");
        assert_eq!(m["cc"][..25], many[..]);
        assert_eq!(m["cc"][25], "… and 1 more, not listed.");
    }

    #[test]
    fn insert_remove_and_lookups() {
        let mut m = FieldMessages::new();
        assert!(m.is_empty());
        assert_eq!(m.insert("b".into(), v(&["1"])), None);
        assert_eq!(m.insert("a".into(), v(&["2"])), None);
        assert_eq!(m.insert("b".into(), v(&["3"])), Some(v(&["1"])));
        assert_eq!(m.len(), 2);
        assert!(m.contains_key("a") && !m.contains_key("c"));
        assert_eq!(m["b"], v(&["3"]));
        assert_eq!(m.remove("a"), Some(v(&["2"])));
        assert_eq!(m.remove("a"), None);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![("b".to_string(), v(&["3"]))]
        );
    }
}
