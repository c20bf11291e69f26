//! The one table of a user's profile fields.
//!
//! Every part that handles a profile field field by field reads it from
//! here: the edge (which JSON names a client may send on registration and
//! update, and the order of the REST `User`), the users service (which
//! update-mask paths exist, which rule checks each field) and the users
//! table's entity (its columns, and the copies between rows and messages).
//!
//! **Adding a profile field** is: the field in `users.proto`'s `User`, a row
//! in [`with_user_fields!`], and a migration adding the column. Nothing
//! else names the fields one by one.

use crate::users::v1::User;

/// Calls `$callback! { $($field: $json, $rule, $reason;)* }` with every
/// profile field: the `User` message's field (and the users table's column,
/// and the update-mask path), its lowerCamelCase JSON name, the [`Rule`] the
/// users service checks it against, and the `reason` of a violation. In the
/// order the REST `User` shows them.
///
/// A callback macro (rather than a list) because the users table's entity
/// needs the field names as identifiers, to declare its columns.
#[macro_export]
macro_rules! with_user_fields {
    ($callback:ident) => {
        $callback! {
            username:   "username",  Username,   "INVALID_USERNAME";
            first_name: "firstName", PersonName, "INVALID_FIRST_NAME";
            last_name:  "lastName",  PersonName, "INVALID_LAST_NAME";
            email:      "email",     Email,      "INVALID_EMAIL";
            phone:      "phone",     Phone,      "INVALID_PHONE";
        }
    };
}

/// The rule a profile field follows. Enforced by the users service (the
/// owner of the data), never at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Required, at most 256 characters, no edge whitespace, no control or
    /// invisible characters; unique after normalisation.
    Username,
    /// Optional free text, at most 256 characters, no control characters.
    PersonName,
    /// Required, `local@domain.tld`.
    Email,
    /// Optional digits with common separators.
    Phone,
}

/// One profile field (one row of [`with_user_fields!`]).
#[derive(Clone, Copy, Debug)]
pub struct UserField {
    /// The `User` field's name: the update-mask path and the column.
    pub proto: &'static str,
    /// The REST JSON name (lowerCamelCase).
    pub json: &'static str,
    /// What the users service checks.
    pub rule: Rule,
    /// The `reason` of a violation of [`Self::rule`].
    pub reason: &'static str,
    /// Reads the field of a message.
    pub get: fn(&User) -> &str,
    /// Writes the field of a message.
    pub set: fn(&mut User, String),
}

macro_rules! field_table {
    ($($field:ident: $json:literal, $rule:ident, $reason:literal;)*) => {
        /// Every profile field, in the REST `User`'s order.
        pub const USER_FIELDS: &[UserField] = &[$(
            UserField {
                proto: stringify!($field),
                json: $json,
                rule: Rule::$rule,
                reason: $reason,
                get: {
                    fn get(u: &User) -> &str {
                        &u.$field
                    }
                    get
                },
                set: {
                    fn set(u: &mut User, v: String) {
                        u.$field = v;
                    }
                    set
                },
            },
        )*];
    };
}
with_user_fields!(field_table);

/// The field whose update-mask path (proto name) is `path`.
pub fn by_proto(path: &str) -> Option<&'static UserField> {
    USER_FIELDS.iter().find(|f| f.proto == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_reads_and_writes_its_own_message_field() {
        let mut user = User::default();
        for (i, f) in USER_FIELDS.iter().enumerate() {
            (f.set)(&mut user, format!("value {i}"));
        }
        for (i, f) in USER_FIELDS.iter().enumerate() {
            assert_eq!((f.get)(&user), format!("value {i}"), "{}", f.proto);
        }
        assert_eq!(user.first_name, "value 1");
        assert_eq!(by_proto("email").map(|f| f.json), Some("email"));
        assert!(by_proto("id").is_none(), "the id is no profile field");
    }
}
