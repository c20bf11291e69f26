//! A user's profile in REST JSON: the `User` body (`id`, then every profile
//! field of the field table, [`otus_proto::user_fields`], under its JSON
//! name) and the fields a client may send.

use otus_proto::{
    user_fields::{self, USER_FIELDS, UserField},
    users::v1::User,
};
use serde::Serialize;

use crate::body::Field;

/// The REST `User` (otus55 shape): `id`, then every profile field of the
/// field table under its JSON name, in the table's order.
#[derive(Debug)]
pub struct UserJson(User);

impl From<User> for UserJson {
    fn from(u: User) -> Self {
        Self(u)
    }
}

impl Serialize for UserJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(1 + USER_FIELDS.len()))?;
        map.serialize_entry("id", &self.0.id)?;
        for f in USER_FIELDS {
            map.serialize_entry(f.json, (f.get)(&self.0))?;
        }
        map.end()
    }
}

/// How the edge names a profile field: its JSON name, and its proto name
/// for update masks.
fn body_field(f: &UserField) -> Field {
    Field {
        json: f.json,
        proto: f.proto,
    }
}

/// Every profile field as the edge names it: a client may send each on
/// registration and update.
pub fn fields() -> impl Iterator<Item = Field> {
    USER_FIELDS.iter().map(body_field)
}

/// Fields only the server sets.
pub const READ_ONLY: &[&str] = &["id"];

/// Sets the profile field named `field` of `user`.
pub fn apply(user: &mut User, field: Field, value: String) {
    if let Some(f) = user_fields::by_proto(field.proto) {
        (f.set)(user, value);
    }
}
