//! Personal-data candidates in sample values: e-mail addresses, phone numbers, street addresses.
//!
//! The patterns aim at what shipment payloads carry, and err towards finding: a reviewer dismisses
//! a false positive in a second, while a miss is a leak nobody looks for. The member name helps
//! (a `phone` member with seven digits is a phone number), but values are also searched inside
//! free text (`"note": "reach me at a@b"`). What must *not* be found, and is tested: postal codes,
//! tracking numbers and ids, dates and timestamps, decimals, pseudonyms, masked values.

use std::sync::LazyLock;

use regex::Regex;

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Candidate {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A street address (house number and street).
    StreetAddress,
}

impl Candidate {
    /// The report's words for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Candidate::Email => "email",
            Candidate::Phone => "phone",
            Candidate::StreetAddress => "street_address",
        }
    }
}

/// Something `@` something: local part and a domain label on each side (no TLD needed: `a@b` in
/// a note is someone's address all the same).
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*").expect("valid pattern")
});

/// A run of digits and phone punctuation, starting with `+`, `(` or a digit.
static PHONE_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?\d[\d ().\-]*\d").expect("valid pattern"));

/// Calendar dates and postal codes (ZIP+4, Brazilian CEP), which look like phone runs.
static NOT_PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}|\d{5}-\d{3,4})$")
        .expect("valid pattern")
});

/// House number, one to four capitalised name words, a street type: `1 Market St`,
/// `221B Baker Street`, `5th Ave` is left to the member-name hint.
static STREET_NUMBER_FIRST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b\d{1,6}[A-Za-z]?,?\s+(?:[A-Z][A-Za-z'.\-]*\s+){1,4}(?i:st|street|ave|avenue|rd|road|blvd|boulevard|ln|lane|dr|drive|way|ct|court|pl|place|sq|square|pkwy|parkway|hwy|highway|ter|terrace|cres|crescent|close|row|walk|alley)\b",
    )
    .expect("valid pattern")
});

/// Street type first, name, then the number: `Av. Paulista 1000`, `Rue de Rivoli 10`.
static STREET_TYPE_FIRST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?i:av|avda|avenida|avenue|rua|calle|viale|rue|piazza|plaza|praça|largo)\.?\s+[\p{Lu}\p{Ll}][\p{L}'.\- ]{1,40}?,?\s+\d{1,5}[A-Za-z]?\b",
    )
    .expect("valid pattern")
});

/// Germanic compounds: `Hauptstraße 5`, `Kerkweg 12`.
static STREET_COMPOUND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b\p{Lu}\p{L}*(?:straße|strasse|str\.|weg|platz|gasse|allee|laan|gade|gatan|vej)\s+\d{1,5}[A-Za-z]?\b",
    )
    .expect("valid pattern")
});

/// What a member's name says its value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    Phone,
    Street,
    /// Postal codes are digit runs that are never phone numbers.
    Postal,
}

fn hint(member: Option<&str>) -> Option<Hint> {
    let member = member?.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| member.contains(w));
    if has(&["postal", "postcode", "zip"]) {
        Some(Hint::Postal)
    } else if has(&["phone", "mobile", "tel", "fax", "msisdn"]) {
        Some(Hint::Phone)
    } else if has(&[
        "street",
        "address_line",
        "addressline",
        "line1",
        "line2",
        "address1",
        "address2",
    ]) {
        Some(Hint::Street)
    } else {
        None
    }
}

/// What a string value of the member `member` looks like, if personal data.
pub fn classify(member: Option<&str>, value: &str) -> Option<Candidate> {
    let hinted = hint(member);
    if EMAIL.is_match(value) {
        return Some(Candidate::Email);
    }
    if hinted != Some(Hint::Postal) && has_phone(value, hinted == Some(Hint::Phone)) {
        return Some(Candidate::Phone);
    }
    if STREET_NUMBER_FIRST.is_match(value)
        || STREET_TYPE_FIRST.is_match(value)
        || STREET_COMPOUND.is_match(value)
    {
        return Some(Candidate::StreetAddress);
    }
    // A street member holding words and a number is an address line even in a form the patterns
    // do not know.
    if hinted == Some(Hint::Street)
        && value.chars().any(char::is_alphabetic)
        && value.chars().any(|c| c.is_ascii_digit())
    {
        return Some(Candidate::StreetAddress);
    }
    None
}

/// What a number value of the member `member` looks like: only a phone number, and only when the
/// member says so (order ids and amounts are numbers too).
pub fn classify_number(member: Option<&str>, text: &str) -> Option<Candidate> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    (hint(member) == Some(Hint::Phone)
        && (7..=15).contains(&digits)
        && text.bytes().all(|b| b.is_ascii_digit()))
    .then_some(Candidate::Phone)
}

/// Whether `value` contains a phone number: 7 to 15 digits in a run not glued to letters or other
/// digits, that is not a date or a decimal, and has phone punctuation or a leading `+` (a bare
/// digit string counts only under a phone-like member name).
fn has_phone(value: &str, hinted: bool) -> bool {
    let bytes = value.as_bytes();
    PHONE_RUN.find_iter(value).any(|found| {
        let run = found.as_str();
        let glued = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if glued(found.start().checked_sub(1).and_then(|i| bytes.get(i)))
            || glued(bytes.get(found.end()))
        {
            return false;
        }
        let digits = run.bytes().filter(u8::is_ascii_digit).count();
        if !(7..=15).contains(&digits) || NOT_PHONE.is_match(run) {
            return false;
        }
        let separators: Vec<u8> = run.bytes().filter(|b| b" ().-".contains(b)).collect();
        let decimal = separators == [b'.'];
        if decimal {
            return false;
        }
        run.starts_with('+') || !separators.is_empty() || hinted
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Realistic and tricky values, with what they must (and must not) be found as.
    #[test]
    fn finds_personal_data_and_nothing_else() {
        use Candidate::*;
        let cases: &[(Option<&str>, &str, Option<Candidate>)] = &[
            // E-mail addresses, alone or in free text.
            (Some("email"), "jane.doe@example.com", Some(Email)),
            (Some("note"), "reach me at a@b", Some(Email)),
            (
                Some("contact"),
                "Rahul <rahul+ship@example.co.uk>",
                Some(Email),
            ),
            (Some("email"), "h:5f2b7c0e9a1d4e3f8b6a7c9d0e1f2a3b", None),
            (Some("email"), "[REDACTED]", None),
            (Some("email"), "ja**************", None),
            (Some("price"), "12 @ 5.00", None),
            // Phone numbers in their many shapes.
            (Some("phone"), "+1 415 555 0101", Some(Phone)),
            (Some("note"), "call (415) 555-0101 after 5", Some(Phone)),
            (Some("phone"), "+44 20 7946 0958", Some(Phone)),
            (Some("contact"), "415.555.0101", Some(Phone)),
            (Some("contact"), "+4915112345678", Some(Phone)),
            (Some("phone"), "4155550101", Some(Phone)),
            (Some("reference"), "4155550101", None),
            // Not phone numbers.
            (Some("postal_code"), "94105", None),
            (Some("postal_code"), "01310-100", None),
            (Some("tracking_number"), "1ZACME0000000001", None),
            (Some("id"), "shp_0001234567", None),
            (Some("shipped_on"), "2026-11-29", None),
            (Some("shipped_at"), "2026-11-29T18:51:25Z", None),
            (Some("due"), "29/11/2026", None),
            (Some("amount"), "1234567.89", None),
            (Some("weight"), "2.5 kg", None),
            (Some("uuid"), "123e4567-e89b-12d3-a456-426614174000", None),
            (Some("version"), "1.2.3", None),
            // Street addresses.
            (Some("street"), "1 Market St", Some(StreetAddress)),
            (Some("line"), "221B Baker Street", Some(StreetAddress)),
            (
                Some("note"),
                "leave it at 10 Downing Street, thanks",
                Some(StreetAddress),
            ),
            (Some("addr"), "Av. Paulista 1000", Some(StreetAddress)),
            (Some("addr"), "Rue de Rivoli 10", Some(StreetAddress)),
            (Some("addr"), "Hauptstraße 5", Some(StreetAddress)),
            (Some("address_line2"), "Apt 4B", Some(StreetAddress)),
            // Not street addresses.
            (Some("note"), "weighs 12 kg and goes by road", None),
            (Some("service"), "1 way", None),
            (Some("city"), "San Francisco", None),
            (Some("street"), "[REDACTED]", None),
            (Some("status"), "in_transit", None),
            (Some("note"), "Ships in 2 days", None),
        ];
        for (member, value, want) in cases {
            assert_eq!(classify(*member, value), *want, "{member:?}: {value}");
        }
    }

    #[test]
    fn numbers_are_phones_only_under_a_phone_member() {
        assert_eq!(
            classify_number(Some("phone"), "4155550101"),
            Some(Candidate::Phone)
        );
        assert_eq!(classify_number(Some("order_id"), "4155550101"), None);
        assert_eq!(classify_number(Some("phone"), "12345"), None);
        assert_eq!(classify_number(Some("phone"), "4.2e9"), None);
    }
}
