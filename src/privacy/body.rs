//! The JSON bodies of the privacy endpoints, read strictly.
//!
//! Bodies go through the same strict reader as inspected traffic ([`crate::json`]): duplicate
//! members, lone surrogates and trailing data are refused. Errors name the member and the rule
//! broken, never the value sent, because the values are personal data.

use crate::json::{Document, Kind, NodeId};
use crate::store::outbox::{RequestType, Subject};

/// A body refused, with a message safe to send back and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// The members of an intake body, and the longest value each may have (characters).
const INTAKE_MEMBERS: &[(&str, usize)] = &[
    ("type", 32),
    ("email", 254),
    ("phone", 32),
    ("tracking_number", 64),
    ("details", 4000),
    ("reply_to", 254),
];

/// A privacy request as filed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    /// What is asked.
    pub kind: RequestType,
    /// Who asks, and what they said.
    pub subject: Subject,
}

/// Reads `POST /privacy/requests`: `type` required, at least one of `email` and `phone`.
pub fn intake(body: &[u8]) -> Result<Intake, BodyError> {
    let mut fields = members(body, INTAKE_MEMBERS)?;
    let mut take = |name: &str| fields.iter_mut().find(|(n, _)| *n == name)?.1.take();
    let kind = match take("type") {
        None => return Err(BodyError("member `type` is required".into())),
        Some(name) => RequestType::parse(&name).ok_or_else(|| {
            BodyError(
                "member `type` must be one of access, delete, correct, opt_out, limit_sensitive"
                    .into(),
            )
        })?,
    };
    let subject = Subject {
        email: take("email"),
        phone: take("phone"),
        tracking_number: take("tracking_number"),
        details: take("details"),
        reply_to: take("reply_to"),
    };
    identifiers(&subject.email, &subject.phone)?;
    if subject
        .tracking_number
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(BodyError("member `tracking_number` is empty".into()));
    }
    Ok(Intake { kind, subject })
}

/// Reads `POST /v1/privacy/erasures`: at least one of `email` and `phone`.
pub fn erasure(body: &[u8]) -> Result<(Option<String>, Option<String>), BodyError> {
    let mut fields = members(body, &[("email", 254), ("phone", 32)])?;
    let email = fields[0].1.take();
    let phone = fields[1].1.take();
    identifiers(&email, &phone)?;
    Ok((email, phone))
}

/// Checks the identifiers: at least one, each plausible for its kind.
fn identifiers(email: &Option<String>, phone: &Option<String>) -> Result<(), BodyError> {
    if email.is_none() && phone.is_none() {
        return Err(BodyError(
            "at least one of `email` and `phone` is required".into(),
        ));
    }
    if let Some(email) = email
        && !is_email(email)
    {
        return Err(BodyError("member `email` is not an e-mail address".into()));
    }
    if let Some(phone) = phone
        && !is_phone(phone)
    {
        return Err(BodyError(
            "member `phone` is not a phone number (digits, spaces and + - ( ) .)".into(),
        ));
    }
    Ok(())
}

/// One `@` with something on both sides, a dot in the domain, no spaces.
fn is_email(value: &str) -> bool {
    let value = value.trim();
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// At least five digits, and nothing but digits and phone punctuation.
fn is_phone(value: &str) -> bool {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    digits >= 5
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// Parses an object whose members are all strings (or null, meaning absent) from `allowed`.
/// Returns one slot per allowed member, in `allowed`'s order.
fn members<'n>(
    body: &[u8],
    allowed: &[(&'n str, usize)],
) -> Result<Vec<(&'n str, Option<String>)>, BodyError> {
    let doc = Document::parse(body).map_err(|e| BodyError(e.to_string()))?;
    let root: NodeId = 0;
    if doc.node(root).kind != Kind::Object {
        return Err(BodyError("the body must be a JSON object".into()));
    }
    let mut slots: Vec<(&str, Option<String>)> = allowed.iter().map(|(n, _)| (*n, None)).collect();
    for member in doc.children(root) {
        let key = doc.key(member).unwrap_or_default();
        let Some(i) = allowed.iter().position(|(n, _)| *n == key) else {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            return Err(BodyError(format!(
                "unknown member (allowed: {})",
                names.join(", ")
            )));
        };
        let (name, max) = allowed[i];
        match doc.node(member).kind {
            Kind::Null => {}
            Kind::String => {
                let value = doc.str_value(member).unwrap_or_default();
                if value.chars().count() > max {
                    return Err(BodyError(format!(
                        "member `{name}` is longer than {max} characters"
                    )));
                }
                if value
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
                {
                    return Err(BodyError(format!(
                        "member `{name}` contains control characters"
                    )));
                }
                slots[i].1 = Some(value.into_owned());
            }
            _ => return Err(BodyError(format!("member `{name}` must be a string"))),
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_request() {
        let body =
            br#"{"type": "delete", "email": "Jane@Example.com", "phone": "+1 (415) 555-0101",
            "tracking_number": "1Z999", "details": "please\nthanks", "reply_to": null}"#;
        let intake = intake(body).unwrap();
        assert_eq!(intake.kind, RequestType::Delete);
        assert_eq!(intake.subject.email.as_deref(), Some("Jane@Example.com"));
        assert_eq!(intake.subject.phone.as_deref(), Some("+1 (415) 555-0101"));
        assert_eq!(intake.subject.tracking_number.as_deref(), Some("1Z999"));
        assert_eq!(intake.subject.reply_to, None);
    }

    /// Every refusal, with the message the requester gets; none repeats the value sent.
    #[test]
    fn refusals_are_clear_and_never_echo_values() {
        let cases: &[(&str, &str)] = &[
            ("", "the body is empty"),
            ("[]", "the body must be a JSON object"),
            (
                r#"{"type": "delete"}"#,
                "at least one of `email` and `phone` is required",
            ),
            (
                r#"{"email": "jane@example.com"}"#,
                "member `type` is required",
            ),
            (
                r#"{"type": "jane@example.com", "email": "jane@example.com"}"#,
                "member `type` must be one of access, delete, correct, opt_out, limit_sensitive",
            ),
            (
                r#"{"type": "access", "email": "jane@example.com", "jane@example.com": 1}"#,
                "unknown member (allowed: type, email, phone, tracking_number, details, reply_to)",
            ),
            (
                r#"{"type": "access", "email": "jane@example.com", "email": "x@y.z"}"#,
                "the body has a duplicate member name (at byte 48)",
            ),
            (
                r#"{"type": "access", "email": 4155550101}"#,
                "member `email` must be a string",
            ),
            (
                r#"{"type": "access", "email": "jane.example.com"}"#,
                "member `email` is not an e-mail address",
            ),
            (
                r#"{"type": "access", "email": "jane@localhost"}"#,
                "member `email` is not an e-mail address",
            ),
            (
                r#"{"type": "access", "phone": "call me"}"#,
                "member `phone` is not a phone number (digits, spaces and + - ( ) .)",
            ),
            (
                r#"{"type": "access", "phone": "1234"}"#,
                "member `phone` is not a phone number (digits, spaces and + - ( ) .)",
            ),
            (
                r#"{"type": "access", "email": "jane@example.com", "tracking_number": " "}"#,
                "member `tracking_number` is empty",
            ),
            (
                r#"{"type": "access", "email": "jane@example.com", "reply_to": "a\u0000b"}"#,
                "member `reply_to` contains control characters",
            ),
            (
                r#"{"type": "access", "email": "jane@example.com"} {}"#,
                "the body has data after the JSON value (at byte 48)",
            ),
            (
                r#"{"type": "access", "email": "jane@example.com",}"#,
                "the body is not valid JSON (at byte 47)",
            ),
        ];
        for (body, message) in cases {
            let got = intake(body.as_bytes()).unwrap_err().0;
            assert_eq!(got, *message, "body: {body}");
            for value in ["jane", "4155550101", "call me"] {
                assert!(!got.contains(value), "{got} echoes the value");
            }
        }
        let long = format!(
            r#"{{"type": "access", "email": "a@b.co", "details": "{}"}}"#,
            "x".repeat(4001)
        );
        assert_eq!(
            intake(long.as_bytes()).unwrap_err().0,
            "member `details` is longer than 4000 characters"
        );
    }

    #[test]
    fn reads_an_erasure() {
        assert_eq!(
            erasure(br#"{"phone": "+14155550101"}"#).unwrap(),
            (None, Some("+14155550101".into()))
        );
        assert_eq!(
            erasure(br#"{}"#).unwrap_err().0,
            "at least one of `email` and `phone` is required"
        );
        assert_eq!(
            erasure(br#"{"email": "a@b.co", "type": "delete"}"#)
                .unwrap_err()
                .0,
            "unknown member (allowed: email, phone)"
        );
    }
}
