//! The bodies of the privacy endpoints, read strictly: JSON from scripts, and the recipient
//! page's form.
//!
//! JSON bodies go through the same strict reader as inspected traffic ([`crate::json`]):
//! duplicate members, lone surrogates and trailing data are refused. A form is held to the same
//! members and limits. Errors name the member and the rule broken, never the value sent, because
//! the values are personal data.

use crate::json::{Document, Kind, NodeId};
use crate::store::outbox::{RequestType, Subject};

/// A body refused, with messages safe to send back and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// The member at fault, when one is (the form marks that field).
    pub field: Option<&'static str>,
    /// The contract's wording, for JSON clients and logs.
    pub message: String,
    /// The same in plain words, for a person at the recipient page.
    pub plain: String,
}

impl BodyError {
    fn of(field: &'static str, message: String, plain: &str) -> BodyError {
        BodyError {
            field: Some(field),
            message,
            plain: plain.into(),
        }
    }

    fn whole(message: String, plain: &str) -> BodyError {
        BodyError {
            field: None,
            message,
            plain: plain.into(),
        }
    }
}

/// The members of an intake body (and the recipient page's form fields), and the longest value
/// each may have (characters).
pub const FORM_FIELDS: &[(&str, usize)] = &[
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

/// Reads `POST /privacy/requests` as JSON: `type` required, at least one of `email` and `phone`.
/// A script gets the first problem.
pub fn intake(body: &[u8]) -> Result<Intake, BodyError> {
    intake_from(members(body, FORM_FIELDS)?).map_err(|mut errors| errors.swap_remove(0))
}

/// Reads the recipient page's form, already split into name and value pairs: the JSON intake's
/// members and rules, where a field left empty is a member left out. A person gets every wrong
/// field at once (never an empty list), so the form is sent again only once.
pub fn intake_form(pairs: &[(String, String)]) -> Result<Intake, Vec<BodyError>> {
    let mut errors = Vec::new();
    let mut slots: Vec<(&str, Option<String>)> =
        FORM_FIELDS.iter().map(|(n, _)| (*n, None)).collect();
    let mut seen = [false; FORM_FIELDS.len()];
    for (name, value) in pairs {
        let Some(i) = FORM_FIELDS.iter().position(|(n, _)| n == name) else {
            return Err(vec![unknown(FORM_FIELDS)]);
        };
        let (name, max) = FORM_FIELDS[i];
        if std::mem::replace(&mut seen[i], true) {
            return Err(vec![BodyError::of(
                name,
                format!("field `{name}` is given twice"),
                "This field was sent twice. Please fill in the form again.",
            )]);
        }
        // Browsers send textarea line breaks as CR LF; the JSON intake's rules allow LF.
        let value = value.replace("\r\n", "\n");
        if !value.trim().is_empty() {
            match checked(name, max, value) {
                Ok(value) => slots[i].1 = Some(value),
                Err(error) => errors.push(error),
            }
        }
    }
    match intake_from(slots) {
        Ok(intake) if errors.is_empty() => Ok(intake),
        Ok(_) => Err(errors),
        Err(more) => {
            // One problem per field, in the form's order.
            for error in more {
                if !errors.iter().any(|e| e.field == error.field) {
                    errors.push(error);
                }
            }
            let order = |e: &BodyError| FORM_FIELDS.iter().position(|(n, _)| Some(*n) == e.field);
            errors.sort_by_key(order);
            Err(errors)
        }
    }
}

/// The intake rules over the members read, in [`FORM_FIELDS`] order: every problem found, in
/// that order (never an empty list).
fn intake_from(mut fields: Vec<(&str, Option<String>)>) -> Result<Intake, Vec<BodyError>> {
    let mut take = |name: &str| fields.iter_mut().find(|(n, _)| *n == name)?.1.take();
    let mut errors = Vec::new();
    let kind = match take("type") {
        None => {
            errors.push(BodyError::of(
                "type",
                "member `type` is required".into(),
                "Choose what you are asking for.",
            ));
            None
        }
        Some(name) => {
            let kind = RequestType::parse(&name);
            if kind.is_none() {
                errors.push(BodyError::of(
                    "type",
                    "member `type` must be one of access, delete, correct, opt_out, \
                     limit_sensitive"
                        .into(),
                    "Choose one of the requests listed.",
                ));
            }
            kind
        }
    };
    let subject = Subject {
        email: take("email"),
        phone: take("phone"),
        tracking_number: take("tracking_number"),
        details: take("details"),
        reply_to: take("reply_to"),
    };
    errors.extend(identifiers(&subject.email, &subject.phone));
    if subject
        .tracking_number
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        errors.push(BodyError::of(
            "tracking_number",
            "member `tracking_number` is empty".into(),
            "Enter the tracking number, or leave the field empty.",
        ));
    }
    match kind {
        Some(kind) if errors.is_empty() => Ok(Intake { kind, subject }),
        _ => Err(errors),
    }
}

/// Reads `POST /v1/privacy/erasures`: at least one of `email` and `phone`.
pub fn erasure(body: &[u8]) -> Result<(Option<String>, Option<String>), BodyError> {
    let mut fields = members(body, &[("email", 254), ("phone", 32)])?;
    let email = fields[0].1.take();
    let phone = fields[1].1.take();
    if let Some(error) = identifiers(&email, &phone).into_iter().next() {
        return Err(error);
    }
    Ok((email, phone))
}

/// Checks the identifiers: at least one, each plausible for its kind. Every problem, e-mail
/// first.
fn identifiers(email: &Option<String>, phone: &Option<String>) -> Vec<BodyError> {
    if email.is_none() && phone.is_none() {
        return vec![BodyError::of(
            "email",
            "at least one of `email` and `phone` is required".into(),
            "Enter your e-mail address or your phone number, so the business can find your data.",
        )];
    }
    let mut errors = Vec::new();
    if let Some(email) = email
        && !is_email(email)
    {
        errors.push(BodyError::of(
            "email",
            "member `email` is not an e-mail address".into(),
            "Enter an e-mail address like name@example.com.",
        ));
    }
    if let Some(phone) = phone
        && !is_phone(phone)
    {
        errors.push(BodyError::of(
            "phone",
            "member `phone` is not a phone number (digits, spaces and + - ( ) .)".into(),
            "Enter a phone number of at least five digits, like +44 20 7946 0000.",
        ));
    }
    errors
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

fn unknown(allowed: &[(&str, usize)]) -> BodyError {
    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
    BodyError::whole(
        format!("unknown member (allowed: {})", names.join(", ")),
        "The form sent a field this page does not have. Please fill in the form again.",
    )
}

/// A member's value within its length, without control characters but line breaks and tabs.
fn checked(name: &'static str, max: usize, value: String) -> Result<String, BodyError> {
    if value.chars().count() > max {
        return Err(BodyError::of(
            name,
            format!("member `{name}` is longer than {max} characters"),
            &format!("This is too long: at most {max} characters."),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(BodyError::of(
            name,
            format!("member `{name}` contains control characters"),
            "This contains characters that cannot be sent. Please type it again.",
        ));
    }
    Ok(value)
}

/// Parses an object whose members are all strings (or null, meaning absent) from `allowed`.
/// Returns one slot per allowed member, in `allowed`'s order.
fn members(
    body: &[u8],
    allowed: &[(&'static str, usize)],
) -> Result<Vec<(&'static str, Option<String>)>, BodyError> {
    let not_json = |message: String| {
        BodyError::whole(message, "The request could not be read. Please try again.")
    };
    let doc = Document::parse(body).map_err(|e| not_json(e.to_string()))?;
    let root: NodeId = 0;
    if doc.node(root).kind != Kind::Object {
        return Err(not_json("the body must be a JSON object".into()));
    }
    let mut slots: Vec<(&str, Option<String>)> = allowed.iter().map(|(n, _)| (*n, None)).collect();
    for member in doc.children(root) {
        let key = doc.key(member).unwrap_or_default();
        let Some(i) = allowed.iter().position(|(n, _)| *n == key) else {
            return Err(unknown(allowed));
        };
        let (name, max) = allowed[i];
        match doc.node(member).kind {
            Kind::Null => {}
            Kind::String => {
                let value = doc.str_value(member).unwrap_or_default().into_owned();
                slots[i].1 = Some(checked(name, max, value)?);
            }
            _ => {
                return Err(BodyError::of(
                    name,
                    format!("member `{name}` must be a string"),
                    "This must be text.",
                ));
            }
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
            let got = intake(body.as_bytes()).unwrap_err().message;
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
            intake(long.as_bytes()).unwrap_err().message,
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
            erasure(br#"{}"#).unwrap_err().message,
            "at least one of `email` and `phone` is required"
        );
        assert_eq!(
            erasure(br#"{"email": "a@b.co", "type": "delete"}"#)
                .unwrap_err()
                .message,
            "unknown member (allowed: email, phone)"
        );
    }
}
