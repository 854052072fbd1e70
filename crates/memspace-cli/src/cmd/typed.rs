//! Whether a JSON value from the command line may go into a collection: the write commands
//! (`list push`, `map set`, `queue put`) refuse a value that a program using the collection's
//! recorded item type could not read back, unless `--force`.
//!
//! # How a value is judged
//!
//! By the decoder itself. The value is encoded as the library stores it (`MessagePack`, by
//! `rmp_serde::to_vec_named`), then decoded by `rmp_serde` as the type the collection's
//! creator recorded (`std::any::type_name`), rebuilt from that name. Only names that describe
//! their type completely are rebuilt: the primitives, `String`, `Option`, `Vec`, `VecDeque`,
//! the sets, arrays, tuples, `HashMap`/`BTreeMap`, `Box`/`Rc`/`Arc`, and `serde_json::Value`
//! (what the CLI's own `create` records, which takes any value). Each is decoded through the
//! same deserializer calls serde's own implementation for it makes (a primitive by that very
//! implementation), so a value passes exactly when the creator's program would read it: `7`
//! goes into an `i64` list, `-1` does not go into a `u64` queue, `1.5` does not go into an
//! `i32` list.
//!
//! A user's own type (a struct, an enum) is only named, not described: its fields, their
//! order and its serde attributes are not in the name, so the CLI cannot judge a value and
//! refuses it. `--force` writes it anyway (a program then reads it if it has the right shape).
//!
//! In shared memory a recorded name is cut at [`TYPE_NAME_MAX`] bytes. A name that long may
//! be cut, and a cut name may read as another complete type, so it is not judged either.

use std::fmt;

use anyhow::bail;
use memspace::segment::TYPE_NAME_MAX;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// How deeply a recorded name may nest (`Option<Vec<...>>`): deeper names are not judged, so
/// that a hostile name in a Redis object cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// A collection the CLI is about to write into.
pub(crate) struct Target<'a> {
    /// `list`, `map` or `queue`.
    pub(crate) kind: &'static str,
    /// Its name, as given on the command line.
    pub(crate) name: &'a str,
    /// The item type its creator recorded (a map's is `(K, V)`).
    pub(crate) recorded: &'a str,
    /// Whether it is in shared memory, where the recorded name is cut at [`TYPE_NAME_MAX`].
    pub(crate) in_shared_memory: bool,
}

/// Which part of a collection's item type a value is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// An item of a list or queue.
    Item,
    /// A map's key (the `K` of `(K, V)`).
    Key,
    /// A map's value (the `V` of `(K, V)`).
    Value,
}

impl Part {
    fn noun(self) -> &'static str {
        if self == Part::Key { "key" } else { "value" }
    }
}

impl Target<'_> {
    /// [`Target::check`] for each of `values`, before any is written.
    pub(crate) fn check_each(
        &self,
        part: Part,
        values: &[Value],
        force: bool,
    ) -> anyhow::Result<()> {
        values
            .iter()
            .try_for_each(|value| self.check(part, value, force))
    }

    /// Checks that `value`, written as `part`, can be read back as the recorded type.
    ///
    /// # Errors
    ///
    /// If it cannot, or if the recorded type is one the CLI cannot judge; never with `force`.
    pub(crate) fn check(&self, part: Part, value: &Value, force: bool) -> anyhow::Result<()> {
        if force {
            return Ok(());
        }
        let (Target { kind, name, .. }, noun) = (self, part.noun());
        let recorded = self.recorded;
        let shown = shorten(&value.to_string());
        let Some(ty) = self.recorded_part(part) else {
            let why = if self.may_be_cut() {
                format!(
                    "whose name may be cut short (a segment keeps {TYPE_NAME_MAX} bytes of it), so \
                     memspace cannot check a value against it"
                )
            } else {
                "which memspace cannot check a value against (the name does not say what the \
                 type looks like)"
                    .to_owned()
            };
            bail!(
                "{kind} `{name}` holds items of type `{recorded}`, {why}; `--force` writes the \
                 {noun} {shown} anyway"
            );
        };
        let bytes = rmp_serde::to_vec_named(value)?;
        let mut decoder = rmp_serde::Deserializer::from_read_ref(&bytes);
        if let Err(err) = Check(&ty).deserialize(&mut decoder) {
            bail!(
                "{kind} `{name}` holds items of type `{recorded}`; the {noun} {shown} does not \
                 fit it ({err}), so a program reading the {kind} could not read it back; `--force` \
                 writes it anyway"
            );
        }
        Ok(())
    }

    /// Whether the recorded name may have been cut: in shared memory, one that fills the
    /// space, or comes within a character of it (a cut never splits a character).
    fn may_be_cut(&self) -> bool {
        self.in_shared_memory && self.recorded.len() + 4 > TYPE_NAME_MAX
    }

    /// The recorded type of `part`, if the CLI can judge it.
    fn recorded_part(&self, part: Part) -> Option<Type> {
        let own = match self.kind {
            "map" => std::any::type_name::<(Value, Value)>(),
            _ => std::any::type_name::<Value>(),
        };
        let whole = if self.recorded == own {
            match self.kind {
                "map" => Type::Tuple(vec![Type::Any, Type::Any]),
                _ => Type::Any,
            }
        } else if self.may_be_cut() {
            return None;
        } else {
            parse(self.recorded)?
        };
        match (part, whole) {
            (Part::Item, ty) => Some(ty),
            (Part::Key | Part::Value, Type::Tuple(mut pair)) if pair.len() == 2 => {
                let value = pair.pop()?;
                let key = pair.pop()?;
                Some(if part == Part::Key { key } else { value })
            }
            _ => None,
        }
    }
}

/// A value for an error message: whole if short, else its start.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

// ---------------------------------------------------------------------------------------------
// Types, as their names describe them

/// A type the CLI can judge values against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Type {
    /// `serde_json::Value`: any value.
    Any,
    Leaf(Leaf),
    Option(Box<Type>),
    /// `Vec<T>`, `VecDeque<T>`, the sets, `Box<[T]>`.
    Seq(Box<Type>),
    /// `[T; N]`.
    Array(Box<Type>, usize),
    /// `(A, B, ...)`, at least one element.
    Tuple(Vec<Type>),
    /// `HashMap<K, V>`, `BTreeMap<K, V>`.
    Map(Box<Type>, Box<Type>),
    /// `serde_json::Map<String, Value>`: a map, or a unit as an empty one.
    JsonObject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Unit,
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    Isize,
    U8,
    U16,
    U32,
    U64,
    U128,
    Usize,
    F32,
    F64,
    Char,
    String,
}

/// The type `name` describes, if it is one of those the CLI rebuilds (see the module docs).
fn parse(name: &str) -> Option<Type> {
    let mut parser = Parser { text: name, at: 0 };
    let ty = parser.ty(0, false)?;
    parser.skip_spaces();
    (parser.at == name.len()).then_some(ty)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.at..).unwrap_or("")
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Option<&str> {
        self.skip_spaces();
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let start = self.at;
        self.at += len;
        (len > 0).then(|| &self.text[start..start + len])
    }

    /// A path, `a::b::C`.
    fn path(&mut self) -> Option<String> {
        let mut path = self.word()?.to_owned();
        while self.rest().starts_with("::") {
            self.at += 2;
            path.push_str("::");
            path.push_str(self.word()?);
        }
        Some(path)
    }

    /// Types separated by commas up to `close` (a trailing comma allowed).
    fn list(&mut self, close: char, depth: usize, unsized_ok: bool) -> Option<Vec<Type>> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.ty(depth + 1, unsized_ok)?);
            if !self.eat(',') {
                return self.eat(close).then_some(items);
            }
        }
    }

    /// One type; `unsized_ok` inside a pointer (`Box<str>`, `Box<[T]>`), which owns a
    /// `String` or a sequence.
    fn ty(&mut self, depth: usize, unsized_ok: bool) -> Option<Type> {
        if depth > MAX_DEPTH {
            return None;
        }
        if self.eat('(') {
            let items = self.list(')', depth, false)?;
            return Some(if items.is_empty() {
                Type::Leaf(Leaf::Unit)
            } else {
                Type::Tuple(items)
            });
        }
        if self.eat('[') {
            let item = self.ty(depth + 1, false)?;
            if self.eat(';') {
                let count = self.word()?.parse().ok()?;
                return self.eat(']').then(|| Type::Array(Box::new(item), count));
            }
            return (unsized_ok && self.eat(']')).then(|| Type::Seq(Box::new(item)));
        }
        let path = self.path()?;
        let pointer = matches!(
            unqualified(&path),
            Some("boxed::Box" | "rc::Rc" | "sync::Arc")
        );
        let args = if self.eat('<') {
            self.list('>', depth, pointer)?
        } else {
            Vec::new()
        };
        if path == "str" {
            return unsized_ok.then_some(Type::Leaf(Leaf::String));
        }
        resolve(&path, args)
    }
}

/// The path of a standard library item without its crate (`std`, `alloc` or `core`, which
/// re-export the same items), or `None` for another crate's.
fn unqualified(path: &str) -> Option<&str> {
    let (krate, rest) = path.split_once("::")?;
    matches!(krate, "std" | "alloc" | "core").then_some(rest)
}

/// The type the path `path` with generic arguments `args` names, if the CLI knows it.
fn resolve(path: &str, mut args: Vec<Type>) -> Option<Type> {
    let no_args = args.is_empty();
    let leaf = |leaf| no_args.then_some(Type::Leaf(leaf));
    let one = |args: &mut Vec<Type>| (args.len() == 1).then(|| args.pop()).flatten();
    match path {
        "bool" => return leaf(Leaf::Bool),
        "char" => return leaf(Leaf::Char),
        "i8" => return leaf(Leaf::I8),
        "i16" => return leaf(Leaf::I16),
        "i32" => return leaf(Leaf::I32),
        "i64" => return leaf(Leaf::I64),
        "i128" => return leaf(Leaf::I128),
        "isize" => return leaf(Leaf::Isize),
        "u8" => return leaf(Leaf::U8),
        "u16" => return leaf(Leaf::U16),
        "u32" => return leaf(Leaf::U32),
        "u64" => return leaf(Leaf::U64),
        "u128" => return leaf(Leaf::U128),
        "usize" => return leaf(Leaf::Usize),
        "f32" => return leaf(Leaf::F32),
        "f64" => return leaf(Leaf::F64),
        "serde_json::value::Value" => return no_args.then_some(Type::Any),
        "serde_json::map::Map" => {
            return (args == [Type::Leaf(Leaf::String), Type::Any]).then_some(Type::JsonObject);
        }
        _ => {}
    }
    match unqualified(path)? {
        "string::String" => leaf(Leaf::String),
        "option::Option" => Some(Type::Option(Box::new(one(&mut args)?))),
        "boxed::Box" | "rc::Rc" | "sync::Arc" => one(&mut args),
        "vec::Vec"
        | "collections::vec_deque::VecDeque"
        | "collections::linked_list::LinkedList"
        | "collections::binary_heap::BinaryHeap"
        | "collections::hash::set::HashSet"
        | "collections::btree::set::BTreeSet" => Some(Type::Seq(Box::new(one(&mut args)?))),
        "collections::hash::map::HashMap" | "collections::btree::map::BTreeMap"
            if args.len() == 2 =>
        {
            let value = args.pop()?;
            let key = args.pop()?;
            Some(Type::Map(Box::new(key), Box::new(value)))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding as a type

/// Decodes one value as `ty`, making the deserializer calls serde's implementation for the
/// type makes, and keeping nothing.
#[derive(Clone, Copy)]
struct Check<'a>(&'a Type);

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, decoder: D) -> Result<(), D::Error> {
        match self.0 {
            Type::Any => Value::deserialize(decoder).map(drop),
            Type::JsonObject => serde_json::Map::<String, Value>::deserialize(decoder).map(drop),
            Type::Leaf(leaf) => leaf.check(decoder),
            Type::Option(_) => decoder.deserialize_option(self),
            Type::Seq(_) => decoder.deserialize_seq(self),
            Type::Array(_, count) => decoder.deserialize_tuple(*count, self),
            Type::Tuple(items) => decoder.deserialize_tuple(items.len(), self),
            Type::Map(..) => decoder.deserialize_map(self),
        }
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Type::Option(_) => f.write_str("an option"),
            Type::Seq(_) => f.write_str("a sequence"),
            Type::Array(_, count) => write!(f, "an array of {count}"),
            Type::Tuple(items) => write!(f, "a tuple of {}", items.len()),
            Type::Map(..) => f.write_str("a map"),
            Type::Any | Type::JsonObject | Type::Leaf(_) => f.write_str("a value"),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        match self.0 {
            Type::Option(_) => Ok(()),
            _ => Err(E::invalid_type(de::Unexpected::Option, &self)),
        }
    }

    // serde's `Option` reads a unit as `None` too.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        match self.0 {
            Type::Option(_) => Ok(()),
            _ => Err(E::invalid_type(de::Unexpected::Unit, &self)),
        }
    }

    fn visit_some<D: Deserializer<'de>>(self, decoder: D) -> Result<(), D::Error> {
        match self.0 {
            Type::Option(inner) => Check(inner).deserialize(decoder),
            _ => Err(de::Error::invalid_type(de::Unexpected::Option, &self)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.0 {
            Type::Seq(item) => {
                while seq.next_element_seed(Check(item))?.is_some() {}
                Ok(())
            }
            Type::Array(item, count) => {
                for at in 0..*count {
                    if seq.next_element_seed(Check(item))?.is_none() {
                        return Err(de::Error::invalid_length(at, &self));
                    }
                }
                Ok(())
            }
            Type::Tuple(items) => {
                for (at, item) in items.iter().enumerate() {
                    if seq.next_element_seed(Check(item))?.is_none() {
                        return Err(de::Error::invalid_length(at, &self));
                    }
                }
                Ok(())
            }
            _ => Err(de::Error::invalid_type(de::Unexpected::Seq, &self)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.0 {
            Type::Map(key, value) => {
                while map.next_key_seed(Check(key))?.is_some() {
                    map.next_value_seed(Check(value))?;
                }
                Ok(())
            }
            _ => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
        }
    }
}

impl Leaf {
    /// Decodes one value by the primitive's own `Deserialize`.
    fn check<'de, D: Deserializer<'de>>(self, decoder: D) -> Result<(), D::Error> {
        match self {
            Leaf::Unit => <()>::deserialize(decoder),
            Leaf::Bool => bool::deserialize(decoder).map(drop),
            Leaf::I8 => i8::deserialize(decoder).map(drop),
            Leaf::I16 => i16::deserialize(decoder).map(drop),
            Leaf::I32 => i32::deserialize(decoder).map(drop),
            Leaf::I64 => i64::deserialize(decoder).map(drop),
            Leaf::I128 => i128::deserialize(decoder).map(drop),
            Leaf::Isize => isize::deserialize(decoder).map(drop),
            Leaf::U8 => u8::deserialize(decoder).map(drop),
            Leaf::U16 => u16::deserialize(decoder).map(drop),
            Leaf::U32 => u32::deserialize(decoder).map(drop),
            Leaf::U64 => u64::deserialize(decoder).map(drop),
            Leaf::U128 => u128::deserialize(decoder).map(drop),
            Leaf::Usize => usize::deserialize(decoder).map(drop),
            Leaf::F32 => f32::deserialize(decoder).map(drop),
            Leaf::F64 => f64::deserialize(decoder).map(drop),
            Leaf::Char => char::deserialize(decoder).map(drop),
            Leaf::String => String::deserialize(decoder).map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;

    fn target<'a>(kind: &'static str, recorded: &'a str, in_shared_memory: bool) -> Target<'a> {
        Target {
            kind,
            name: "jobs",
            recorded,
            in_shared_memory,
        }
    }

    fn fits(recorded: &str, value: &Value) -> bool {
        target("list", recorded, false)
            .check(Part::Item, value, false)
            .is_ok()
    }

    /// Values of many shapes, for comparing the judge with the real decoder.
    fn samples() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(0),
            json!(7),
            json!(-1),
            json!(300),
            json!(70_000),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(2.0),
            json!("a string"),
            json!("c"),
            json!([]),
            json!([1, 2]),
            json!([1, "two"]),
            json!([[1], [2, 3]]),
            json!([null, 4]),
            json!({}),
            json!({"a": 1}),
            json!({"a": "b"}),
            json!({"a": [1, 2]}),
        ]
    }

    /// The judge accepts exactly the values that decode as `T`.
    fn agrees_with_the_decoder<T: DeserializeOwned>() {
        let name = std::any::type_name::<T>();
        assert!(parse(name).is_some(), "`{name}` is not understood");
        for value in samples() {
            let bytes = rmp_serde::to_vec_named(&value).expect("encode");
            let decodes = rmp_serde::from_slice::<T>(&bytes).is_ok();
            assert_eq!(
                fits(name, &value),
                decodes,
                "`{name}` and {value}: the decoder says {decodes}"
            );
        }
    }

    #[test]
    fn the_judge_accepts_exactly_what_the_decoder_reads() {
        agrees_with_the_decoder::<()>();
        agrees_with_the_decoder::<bool>();
        agrees_with_the_decoder::<i8>();
        agrees_with_the_decoder::<u8>();
        agrees_with_the_decoder::<i16>();
        agrees_with_the_decoder::<u16>();
        agrees_with_the_decoder::<i32>();
        agrees_with_the_decoder::<u32>();
        agrees_with_the_decoder::<i64>();
        agrees_with_the_decoder::<u64>();
        agrees_with_the_decoder::<i128>();
        agrees_with_the_decoder::<u128>();
        agrees_with_the_decoder::<isize>();
        agrees_with_the_decoder::<usize>();
        agrees_with_the_decoder::<f32>();
        agrees_with_the_decoder::<f64>();
        agrees_with_the_decoder::<char>();
        agrees_with_the_decoder::<String>();
        agrees_with_the_decoder::<Box<str>>();
        agrees_with_the_decoder::<Option<i64>>();
        agrees_with_the_decoder::<Option<Option<u8>>>();
        agrees_with_the_decoder::<Vec<i64>>();
        agrees_with_the_decoder::<Vec<Option<u8>>>();
        agrees_with_the_decoder::<Vec<Vec<u64>>>();
        agrees_with_the_decoder::<Box<[u8]>>();
        agrees_with_the_decoder::<VecDeque<String>>();
        agrees_with_the_decoder::<HashSet<u8>>();
        agrees_with_the_decoder::<BTreeSet<i32>>();
        agrees_with_the_decoder::<[u8; 2]>();
        agrees_with_the_decoder::<[u8; 0]>();
        agrees_with_the_decoder::<(i64,)>();
        agrees_with_the_decoder::<(i64, String)>();
        agrees_with_the_decoder::<(u8, u8)>();
        agrees_with_the_decoder::<HashMap<String, i64>>();
        agrees_with_the_decoder::<BTreeMap<String, Vec<u8>>>();
        agrees_with_the_decoder::<serde_json::Map<String, Value>>();
        agrees_with_the_decoder::<Value>();
    }

    #[test]
    fn the_examples_of_the_issue_are_judged_as_a_program_would_read_them() {
        assert!(fits("i64", &json!(7)));
        assert!(!fits("i64", &json!("a string")));
        assert!(!fits("u64", &json!(-1)));
        assert!(fits("alloc::string::String", &json!("text")));
        assert!(fits("f64", &json!(1)));
        assert!(fits("core::option::Option<i64>", &json!(null)));
        assert!(fits("alloc::vec::Vec<bool>", &json!([true, false])));
        assert!(fits("(i64, alloc::string::String)", &json!([1, "one"])));
        assert!(!fits("(i64, alloc::string::String)", &json!([1])));
    }

    #[test]
    fn a_type_the_name_does_not_describe_is_refused_and_force_writes_it() {
        for recorded in [
            "my_app::Job",
            "alloc::vec::Vec<my_app::Job>",
            "core::option::Option<my_app::Color>",
            "&str",
            "str",
            "[u8]",
            "",
            "i64>",
            "alloc::vec::Vec<i64",
        ] {
            let target = target("list", recorded, false);
            let err = target
                .check(Part::Item, &json!({"id": 1}), false)
                .expect_err(recorded);
            let message = err.to_string();
            assert!(
                message.contains("list `jobs`")
                    && message.contains(&format!("`{recorded}`"))
                    && message.contains("--force"),
                "{message}"
            );
            target
                .check(Part::Item, &json!({"id": 1}), true)
                .expect("--force");
        }
    }

    #[test]
    fn a_name_that_may_be_cut_is_not_judged() {
        // A long name is whole in a segment as on Redis, and understood.
        let long = std::any::type_name::<Vec<Option<(String, Vec<Option<String>>)>>>();
        assert!(long.len() > 100, "{long}");
        for in_shared_memory in [false, true] {
            target("queue", long, in_shared_memory)
                .check(Part::Item, &json!([null, ["a", [null, "b"]]]), false)
                .expect("a long name");
        }
        // One that fills a segment's space (a 4088-byte name of nested `Option`s, say) may have
        // been cut there, at a character boundary, where it can read as a complete type.
        let deep = format!("{}i64{}", "Option<".repeat(585), ">".repeat(583));
        let cut = &deep[..TYPE_NAME_MAX];
        let err = target("list", cut, true)
            .check(Part::Item, &json!(1), false)
            .expect_err("a cut name");
        assert!(err.to_string().contains("cut short"), "{err}");
        let near = &deep[..TYPE_NAME_MAX - 3];
        let err = target("list", near, true)
            .check(Part::Item, &json!(1), false)
            .expect_err("a name within a character of the limit");
        assert!(err.to_string().contains("cut short"), "{err}");
        // The CLI's own map type is whole.
        let own = std::any::type_name::<(Value, Value)>();
        let own = target("map", own, true);
        own.check(Part::Key, &json!([1, "a"]), false)
            .expect("any key");
        own.check(Part::Value, &json!({"b": null}), false)
            .expect("any value");
    }

    #[test]
    fn map_keys_and_values_are_judged_against_their_own_types() {
        let recorded = std::any::type_name::<(String, u32)>();
        let map = target("map", recorded, false);
        map.check(Part::Key, &json!("ada"), false)
            .expect("a string key");
        map.check(Part::Value, &json!(36), false)
            .expect("a u32 value");
        let err = map
            .check(Part::Key, &json!(36), false)
            .expect_err("a number key");
        assert!(err.to_string().contains("the key 36"), "{err}");
        let err = map.check(Part::Value, &json!(-1), false).expect_err("-1");
        let message = err.to_string();
        assert!(
            message.contains("map `jobs`")
                && message.contains(&format!("`{recorded}`"))
                && message.contains("the value -1")
                && message.contains("--force"),
            "{message}"
        );
    }

    #[test]
    fn a_deeply_nested_name_is_not_judged_and_does_not_exhaust_the_stack() {
        let deep = format!(
            "{}i64{}",
            "core::option::Option<".repeat(10_000),
            ">".repeat(10_000)
        );
        assert!(parse(&deep).is_none());
        let deep = format!("{}i64{}", "(".repeat(100_000), ",)".repeat(100_000));
        assert!(parse(&deep).is_none());
        let shallow = format!("{}i64{}", "core::option::Option<".repeat(5), ">".repeat(5));
        assert!(parse(&shallow).is_some());
    }

    #[test]
    fn a_long_value_is_shortened_in_messages() {
        let long = "x".repeat(1000);
        let err = target("list", "i64", false)
            .check(Part::Item, &json!(long), false)
            .expect_err("a string");
        assert!(err.to_string().len() < 400, "{err}");
    }
}
