//! Turning a decoded k8s-pb message into the JSON a JSON client would have sent.
//!
//! The messages' own conversions are generated (`generated.rs`, one field per line);
//! this file holds what they are built from: [`ToJson`] for scalars, lists and maps,
//! [`Fields`] that collects one object's fields, and the few types whose JSON is not
//! their protobuf shape, written by hand because Kubernetes' own marshalling is:
//!
//! | protobuf message | JSON |
//! | --- | --- |
//! | `IntOrString {type, intVal, strVal}` | a number, or a string when `type` is 1 |
//! | `Quantity {string}` | the string (`"500m"`) |
//! | `Time {seconds, nanos}` | RFC 3339 in UTC, whole seconds (`"2026-01-02T03:04:05Z"`) |
//! | `MicroTime {seconds, nanos}` | RFC 3339 in UTC, microseconds |
//! | `FieldsV1`, `RawExtension`, apiextensions `JSON` `{raw}` | the JSON document in `raw` |
//! | `JSONSchemaPropsOrArray`, `…OrBool`, `…OrStringArray` | the schema, else the array or bool |
//! | `ExtraValue {items}` (a named `[]string` in Go) | the list |
//! | `bytes` fields (`Secret.data`) | base64 |
//!
//! A Go struct embedded with `json:",inline"` (`VolumeSource` in `Volume`, `ProbeHandler`
//! in `Probe`) is a message field in protobuf; its fields join the parent's
//! ([`Fields::inline`]).
//!
//! Fields are left out as Kubernetes' JSON leaves them out: an unset optional field, an
//! empty list or map, an empty string, an unset time. Numbers and booleans that are set
//! are kept, zero and `false` included (`replicas: 0` must stay), and a set message stays
//! even when empty (`emptyDir: {}`).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, MicroTime, Time};
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

/// A value with a Kubernetes JSON form.
pub trait ToJson {
    /// The JSON value.
    fn to_json(&self) -> Value;

    /// Whether a field holding this value is left out of its object.
    fn is_omitted(&self) -> bool {
        false
    }
}

/// The fields of one JSON object, in the message's order.
#[derive(Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// Add `name` unless its value is left out.
    pub fn field<T: ToJson + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if !value.is_omitted() {
            self.0.insert(name.to_string(), value.to_json());
        }
        self
    }

    /// Add the fields of an embedded message (a Go struct embedded with
    /// `json:",inline"`, as `VolumeSource` in `Volume`: a field of its own in protobuf).
    pub fn inline<T: ToJson>(mut self, value: &Option<T>) -> Self {
        if let Some(Value::Object(fields)) = value.as_ref().map(ToJson::to_json) {
            self.0.extend(fields);
        }
        self
    }

    /// Add a `bytes` field, base64-encoded as in Kubernetes' JSON.
    pub fn bytes(mut self, name: &str, value: &Option<Vec<u8>>) -> Self {
        if let Some(b) = value {
            self.0
                .insert(name.to_string(), Value::String(STANDARD.encode(b)));
        }
        self
    }

    /// Add a map of `bytes` (`Secret.data`, `ConfigMap.binaryData`), values base64.
    pub fn bytes_map(mut self, name: &str, value: &BTreeMap<String, Vec<u8>>) -> Self {
        if !value.is_empty() {
            let m = value
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(STANDARD.encode(v))))
                .collect();
            self.0.insert(name.to_string(), Value::Object(m));
        }
        self
    }

    /// The object.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn is_omitted(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl ToJson for f64 {
    fn to_json(&self) -> Value {
        Value::from(*self)
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToJson::to_json)
    }
    fn is_omitted(&self) -> bool {
        self.as_ref().is_none_or(ToJson::is_omitted)
    }
}

impl<T: ToJson + ?Sized> ToJson for Box<T> {
    fn to_json(&self) -> Value {
        (**self).to_json()
    }
    fn is_omitted(&self) -> bool {
        (**self).is_omitted()
    }
}

/// A list keeps every element, an empty string too; an empty list is left out.
impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(ToJson::to_json).collect())
    }
    fn is_omitted(&self) -> bool {
        self.is_empty()
    }
}

impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(&self) -> Value {
        Value::Object(self.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
    }
    fn is_omitted(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for IntOrString {
    fn to_json(&self) -> Value {
        // `type` 1 is intstr.String; 0 (or unset) is intstr.Int
        if self.r#type == Some(1) {
            Value::String(self.str_val.clone().unwrap_or_default())
        } else {
            Value::from(self.int_val.unwrap_or(0))
        }
    }
}

impl ToJson for Quantity {
    fn to_json(&self) -> Value {
        Value::String(self.string.clone().unwrap_or_default())
    }
}

/// RFC 3339 in UTC with `digits` fractional digits; a timestamp out of range stays a
/// number, which the typed decoding then rejects, naming the field.
fn rfc3339(seconds: i64, nanos: i32, digits: usize) -> Value {
    match jiff::Timestamp::new(seconds, nanos.clamp(0, 999_999_999)) {
        Ok(t) => {
            let whole = t.strftime("%Y-%m-%dT%H:%M:%S");
            Value::String(match digits {
                0 => format!("{whole}Z"),
                _ => format!("{whole}.{:06}Z", t.subsec_nanosecond() / 1000),
            })
        }
        Err(_) => Value::from(seconds),
    }
}

/// Go's zero `Time` is sent as an empty message, and marshals to JSON as `null`.
impl ToJson for Time {
    fn to_json(&self) -> Value {
        rfc3339(self.seconds.unwrap_or(0), self.nanos.unwrap_or(0), 0)
    }
    fn is_omitted(&self) -> bool {
        self.seconds.is_none() && self.nanos.is_none()
    }
}

impl ToJson for MicroTime {
    fn to_json(&self) -> Value {
        rfc3339(self.seconds.unwrap_or(0), self.nanos.unwrap_or(0), 6)
    }
    fn is_omitted(&self) -> bool {
        self.seconds.is_none() && self.nanos.is_none()
    }
}

/// The JSON document in a `raw` field; bytes that are not JSON stay a base64 string,
/// which the typed decoding then rejects where a document is expected.
fn raw_json(raw: &Option<Vec<u8>>) -> Value {
    let raw = raw.as_deref().unwrap_or_default();
    serde_json::from_slice(raw).unwrap_or_else(|_| Value::String(STANDARD.encode(raw)))
}

impl ToJson for FieldsV1 {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
    fn is_omitted(&self) -> bool {
        self.raw.is_none()
    }
}

impl ToJson for RawExtension {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
    fn is_omitted(&self) -> bool {
        self.raw.is_none()
    }
}

impl ToJson for apiextensions::Json {
    fn to_json(&self) -> Value {
        raw_json(&self.raw)
    }
    fn is_omitted(&self) -> bool {
        self.raw.is_none()
    }
}

impl ToJson for apiextensions::JsonSchemaPropsOrArray {
    fn to_json(&self) -> Value {
        match &self.schema {
            Some(schema) => schema.to_json(),
            None => self.j_son_schemas.to_json(),
        }
    }
}

impl ToJson for apiextensions::JsonSchemaPropsOrBool {
    fn to_json(&self) -> Value {
        match &self.schema {
            Some(schema) => schema.to_json(),
            None => Value::Bool(self.allows.unwrap_or(false)),
        }
    }
}

impl ToJson for apiextensions::JsonSchemaPropsOrStringArray {
    fn to_json(&self) -> Value {
        match &self.schema {
            Some(schema) => schema.to_json(),
            None => self.property.to_json(),
        }
    }
}

impl ToJson for k8s_pb::api::authentication::v1::ExtraValue {
    fn to_json(&self) -> Value {
        self.items.to_json()
    }
}

impl ToJson for k8s_pb::api::authorization::v1::ExtraValue {
    fn to_json(&self) -> Value {
        self.items.to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_types_have_their_kubernetes_json_form() {
        let port = IntOrString {
            r#type: Some(1),
            int_val: None,
            str_val: Some("http".into()),
        };
        assert_eq!(port.to_json(), Value::from("http"));
        let port = IntOrString {
            r#type: Some(0),
            int_val: Some(8080),
            str_val: None,
        };
        assert_eq!(port.to_json(), Value::from(8080));
        let t = Time {
            seconds: Some(1_767_323_045),
            nanos: Some(5),
        };
        assert_eq!(t.to_json(), Value::from("2026-01-02T03:04:05Z"));
        let t = MicroTime {
            seconds: Some(1_767_323_045),
            nanos: Some(123_456_789),
        };
        assert_eq!(t.to_json(), Value::from("2026-01-02T03:04:05.123456Z"));
        assert!(Time::default().is_omitted());
        let f = Fields::default()
            .field("empty", &Some(String::new()))
            .field("zero", &Some(0i32))
            .field("no", &Some(false))
            .field("list", &Vec::<String>::new())
            .bytes_map("data", &BTreeMap::from([("k".into(), b"v\0".to_vec())]))
            .into_value();
        assert_eq!(
            f,
            serde_json::json!({"zero": 0, "no": false, "data": {"k": "dgA="}})
        );
    }
}
