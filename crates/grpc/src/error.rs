//! The error kit: how a service turns a failure into a `tonic::Status`.

use std::{collections::HashMap, fmt::Display, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `google.rpc.ErrorInfo.domain` of one service (`users.otus`, …), and
/// the statuses it returns. Every error a service makes carries an
/// `ErrorInfo`: that is how the edge tells a service's answer (its message
/// written for clients) from a transport failure (whose text names
/// internals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorDomain(pub &'static str);

impl ErrorDomain {
    /// `code` with the machine `reason` and a message for clients.
    pub fn status(self, code: Code, reason: &str, message: impl Into<String>) -> Status {
        self.status_with(code, reason, message, ErrorDetails::new())
    }

    /// [`Self::status`] with further details (`RetryInfo`, `BadRequest`).
    pub fn status_with(
        self,
        code: Code,
        reason: &str,
        message: impl Into<String>,
        mut details: ErrorDetails,
    ) -> Status {
        details.set_error_info(reason, self.0, HashMap::new());
        Status::with_error_details(code, message, details)
    }

    /// INVALID_ARGUMENT with a `BadRequest` detail naming each violated
    /// field: `(field, description)`.
    pub fn invalid_argument<'a>(
        self,
        reason: &str,
        message: impl Into<String>,
        violations: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Status {
        let mut details = ErrorDetails::new();
        for (field, description) in violations {
            details.add_bad_request_violation(field, description);
        }
        self.status_with(Code::InvalidArgument, reason, message, details)
    }

    /// A code with a `RetryInfo` detail: the edge turns `retry_after` into a
    /// `Retry-After` header.
    pub fn retry_later(
        self,
        code: Code,
        reason: &str,
        message: impl Into<String>,
        retry_after: Duration,
    ) -> Status {
        self.status_with(
            code,
            reason,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        )
    }

    /// UNAVAILABLE (clients may retry): `store` is out of reach. The cause
    /// is logged, never sent.
    pub fn unavailable(self, reason: &str, store: &str, cause: &dyn Display) -> Status {
        tracing::warn!(error = %cause, domain = self.0, "{store} unavailable");
        self.status(
            Code::Unavailable,
            reason,
            format!("the {store} is unavailable; try again later"),
        )
    }

    /// An opaque INTERNAL for a fault of the service itself (a bug, an
    /// unexpected database answer). The cause is logged with the domain;
    /// the client learns nothing about internals.
    pub fn internal(self, cause: &dyn Display) -> Status {
        tracing::error!(error = %cause, domain = self.0, "internal error");
        self.status(Code::Internal, "INTERNAL", "internal error")
    }

    /// The answer to a store's failure that was not a client's doing: out
    /// of reach (`out_of_reach`, as the store's own crate sorts it, e.g.
    /// `otus_db::is_unavailable`) → UNAVAILABLE with `reason`
    /// ("the `store` is unavailable"); anything else → an opaque INTERNAL.
    pub fn store_failure(
        self,
        reason: &str,
        store: &str,
        out_of_reach: bool,
        cause: &dyn Display,
    ) -> Status {
        if out_of_reach {
            self.unavailable(reason, store, cause)
        } else {
            self.internal(cause)
        }
    }

    /// [`Self::store_failure`] of a database, with the reason
    /// `DATABASE_UNAVAILABLE`. A service that gives a unique violation a
    /// meaning of its own (a taken username) sorts it out first.
    pub fn database(self, database: &str, out_of_reach: bool, cause: &dyn Display) -> Status {
        self.store_failure("DATABASE_UNAVAILABLE", database, out_of_reach, cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: ErrorDomain = ErrorDomain("test.otus");

    #[test]
    fn every_status_carries_the_domain_and_reason() {
        let s = DOMAIN.invalid_argument(
            "INVALID_EMAIL",
            "email is not an address",
            [("email", "needs an @".to_owned())],
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "email is not an address");
        let details = s.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_EMAIL", "test.otus")
        );
        let bad = details.bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "email");
        assert_eq!(bad.field_violations[0].description, "needs an @");
    }

    #[test]
    fn retry_info_rides_along() {
        let s = DOMAIN.retry_later(
            Code::ResourceExhausted,
            "TOO_MANY_ATTEMPTS",
            "slow down",
            Duration::from_secs(7),
        );
        let details = s.get_error_details();
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(7))
        );
        assert_eq!(details.error_info().unwrap().reason, "TOO_MANY_ATTEMPTS");
    }

    #[test]
    fn store_failures_are_unavailable_only_when_out_of_reach() {
        let s = DOMAIN.database("test database", true, &"connection refused");
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.message(),
            "the test database is unavailable; try again later"
        );
        assert_eq!(
            s.get_error_details().error_info().unwrap().reason,
            "DATABASE_UNAVAILABLE"
        );

        // A bug (here: a query the database refused) is no reason to retry,
        // and its text (it may name tables) never reaches the client.
        let s = DOMAIN.database("test database", false, &"no such table: credentials");
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "internal error");
        assert_eq!(
            s.get_error_details().error_info().unwrap().reason,
            "INTERNAL"
        );
    }
}
