//! Field rules for user profiles. The users service is the only place they are
//! enforced: the edge forwards whatever the client sent and maps the answer.
//! Which field follows which [`Rule`] is the field table's
//! ([`otus_proto::user_fields`]); what each rule means is written here.

use otus_proto::{
    user_fields::{Rule, USER_FIELDS},
    users::v1::User,
};

/// Longest accepted username, in characters (otus55: `maxLength: 256`).
pub const USERNAME_MAX_CHARS: usize = 256;
/// Longest accepted first or last name, in characters.
pub const NAME_MAX_CHARS: usize = 256;
/// Longest accepted e-mail address (RFC 5321 path limit).
pub const EMAIL_MAX_CHARS: usize = 254;
/// Longest accepted phone number as written, separators included.
pub const PHONE_MAX_CHARS: usize = 32;

/// One field that broke a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The field in the API's (proto) naming, e.g. `first_name`.
    pub field: &'static str,
    /// Stable machine code, e.g. `INVALID_EMAIL`.
    pub reason: &'static str,
    /// What is wrong, for humans.
    pub description: String,
}

impl Violation {
    fn new(field: &'static str, reason: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            reason,
            description: description.into(),
        }
    }
}

/// Checks every profile field of `user` (as it would be stored) and
/// returns all violations (empty: valid), in the field table's order.
pub fn check(user: &User) -> Vec<Violation> {
    USER_FIELDS
        .iter()
        .filter_map(|f| {
            let v = (f.get)(user);
            match f.rule {
                Rule::Username => username(f.proto, f.reason, v),
                Rule::PersonName => name(f.proto, f.reason, v),
                Rule::Email => email(f.proto, f.reason, v),
                Rule::Phone => phone(f.proto, f.reason, v),
            }
        })
        .collect()
}

/// A username as typed at login: anything a registration could have stored
/// is looked up; characters none can hold (control characters, NUL above
/// all, which PostgreSQL cannot store at all) are a client error, the same on
/// every backend.
pub fn lookup_username(v: &str) -> Option<Violation> {
    has_control(v).then(|| {
        Violation::new(
            "username",
            "INVALID_USERNAME",
            "username must not contain control characters",
        )
    })
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn username(field: &'static str, reason: &'static str, v: &str) -> Option<Violation> {
    let bad = |why: String| Some(Violation::new(field, reason, format!("{field} {why}")));
    if v.is_empty() {
        return bad("is required".into());
    }
    if v.chars().count() > USERNAME_MAX_CHARS {
        return bad(format!("must be at most {USERNAME_MAX_CHARS} characters"));
    }
    if v.trim() != v {
        return bad("must not start or end with whitespace".into());
    }
    if has_control(v) {
        return bad("must not contain control characters".into());
    }
    if let Some(why) = crate::username::refusal(v) {
        return bad(why.into());
    }
    None
}

fn name(field: &'static str, reason: &'static str, v: &str) -> Option<Violation> {
    if v.chars().count() > NAME_MAX_CHARS {
        return Some(Violation::new(
            field,
            reason,
            format!("{field} must be at most {NAME_MAX_CHARS} characters"),
        ));
    }
    if has_control(v) {
        return Some(Violation::new(
            field,
            reason,
            format!("{field} must not contain control characters"),
        ));
    }
    None
}

/// A pragmatic address check: `local@domain.tld`, ASCII, no whitespace, a
/// dotted domain of letter/digit/hyphen labels. It rejects what is certainly
/// wrong; it does not try to accept every RFC 5322 oddity (quoted locals, IP
/// literals), which real sign-up forms do not accept either.
fn email(field: &'static str, reason: &'static str, v: &str) -> Option<Violation> {
    if v.is_empty() {
        return Some(Violation::new(
            field,
            reason,
            format!("{field} is required"),
        ));
    }
    if v.chars().count() > EMAIL_MAX_CHARS {
        return Some(Violation::new(
            field,
            reason,
            format!("{field} must be at most {EMAIL_MAX_CHARS} characters"),
        ));
    }
    let bad = || {
        Some(Violation::new(
            field,
            reason,
            format!("{field} is not a valid e-mail address"),
        ))
    };
    let Some((local, domain)) = v.split_once('@') else {
        return bad();
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    if local_ok && domain_ok { None } else { bad() }
}

/// Optional; when given: an optional leading `+`, then digits with spaces,
/// dashes, dots or parentheses between them, 5 to 20 digits in all. Accepts
/// the shapes Postman's `{{$randomPhoneNumber}}` produces (`555-123-4567`).
fn phone(field: &'static str, reason: &'static str, v: &str) -> Option<Violation> {
    if v.is_empty() {
        return None;
    }
    let bad = || {
        Some(Violation::new(
            field,
            reason,
            format!(
                "{field} must be digits with an optional leading '+' and separators ' -.()', \
                 5 to 20 digits"
            ),
        ))
    };
    if v.chars().count() > PHONE_MAX_CHARS {
        return bad();
    }
    let body = v.strip_prefix('+').unwrap_or(v);
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || " -.()".contains(c))
    {
        return bad();
    }
    let digits = body.chars().filter(char::is_ascii_digit).count();
    if !(5..=20).contains(&digits) {
        return bad();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> User {
        User {
            username: "Kaylee.Hayes".into(),
            first_name: "Kaylee".into(),
            last_name: "Hayes".into(),
            email: "kaylee.hayes@example.com".into(),
            phone: "535-652-7183".into(),
            ..User::default()
        }
    }

    fn reasons(u: &User) -> Vec<&'static str> {
        check(u).into_iter().map(|v| v.reason).collect()
    }

    #[test]
    fn a_complete_profile_is_valid() {
        assert!(check(&ok()).is_empty());
        assert!(
            check(&User {
                first_name: "".into(),
                last_name: "".into(),
                phone: "".into(),
                ..ok()
            })
            .is_empty(),
            "names and phone are optional"
        );
    }

    #[test]
    fn username_is_required_and_at_most_256_characters() {
        assert_eq!(
            reasons(&User {
                username: "".into(),
                ..ok()
            }),
            ["INVALID_USERNAME"]
        );
        let max = "ж".repeat(256); // counted in characters, not bytes
        assert!(
            check(&User {
                username: max.clone(),
                ..ok()
            })
            .is_empty()
        );
        let over = "a".repeat(257);
        assert_eq!(
            reasons(&User {
                username: over.clone(),
                ..ok()
            }),
            ["INVALID_USERNAME"]
        );
        assert_eq!(
            reasons(&User {
                username: " bob".into(),
                ..ok()
            }),
            ["INVALID_USERNAME"]
        );
        assert_eq!(
            reasons(&User {
                username: "bo\nb".into(),
                ..ok()
            }),
            ["INVALID_USERNAME"]
        );
    }

    #[test]
    fn emails_must_look_like_addresses() {
        for good in [
            "a@b.co",
            "first.last+tag@mail.example.org",
            "x_y@sub-domain.ru",
        ] {
            assert!(
                check(&User {
                    email: good.into(),
                    ..ok()
                })
                .is_empty(),
                "{good}"
            );
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@b.c",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            ".a@b.com",
            "a..b@c.com",
            "a@b.com.",
            "a@@b.com",
            "a@b.c0m",
        ] {
            assert_eq!(
                reasons(&User {
                    email: bad.into(),
                    ..ok()
                }),
                ["INVALID_EMAIL"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn phones_are_digits_with_common_separators() {
        for good in [
            "+7 (912) 345-67-89",
            "555.123.4567",
            "12345",
            "1-535-652-7183 ",
        ] {
            let trimmed = good.trim_end();
            assert!(
                check(&User {
                    phone: trimmed.into(),
                    ..ok()
                })
                .is_empty(),
                "{good}"
            );
        }
        for bad in [
            "1234",
            "call me",
            "+7+912",
            "123456789012345678901",
            "12-34x",
        ] {
            assert_eq!(
                reasons(&User {
                    phone: bad.into(),
                    ..ok()
                }),
                ["INVALID_PHONE"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let all_bad = &User {
            username: "".into(),
            first_name: "x\u{7}".into(),
            last_name: "ok".into(),
            email: "nope".into(),
            phone: "abc".into(),
            ..User::default()
        };
        assert_eq!(
            reasons(all_bad),
            [
                "INVALID_USERNAME",
                "INVALID_FIRST_NAME",
                "INVALID_EMAIL",
                "INVALID_PHONE"
            ]
        );
    }
}
