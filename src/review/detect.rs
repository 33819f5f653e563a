//! Personal-data candidates in sample values, one detector per category the privacy policy names:
//! contact data (e-mail, phone, street), identifiers (names, usernames), sensitive data
//! (government ids, precise geolocation), biometric and visual data (signature images, photos),
//! dates of birth, IP addresses, payment cards, and shipping labels as images or PDFs.
//!
//! Detectors use structure where it exists (check digits, IP parsing, decoded magic bytes,
//! coordinate ranges) and the member's name where the value alone cannot tell (a name is just
//! words; a date is a date of birth only under `dob`). They run from the most specific to the
//! least, and the first that fires labels the value: an IP address or a tax id is never reported
//! as a phone. They err towards finding: a reviewer dismisses a false positive in a second, while a
//! miss is a leak nobody looks for. What must *not* be found, and is tested with a corpus
//! (`tests/detect_corpus.rs`): carriers' tracking numbers, ids, amounts, dates and timestamps,
//! SKUs, UUIDs, hashes, dimensions, customs HS codes, pseudonyms and masked values.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use base64::Engine as _;
use regex::Regex;

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Candidate {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A street address (house number and street).
    StreetAddress,
    /// A person's name.
    Name,
    /// A username or login handle.
    Username,
    /// A government identification number: tax ids (CPF, CNPJ, SSN, EIN, EU VAT, EORI),
    /// passports and national ids.
    GovernmentId,
    /// A latitude/longitude pair precise enough to find a house.
    PreciseLocation,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A payment card number (Luhn-valid, with a card network's prefix).
    PaymentCard,
    /// A date of birth.
    DateOfBirth,
    /// A handwritten signature, as an image.
    SignatureImage,
    /// A photo or other image (proof-of-delivery photos).
    Image,
    /// A shipping label or other document, as an image or a PDF (a label carries the address).
    Document,
}

impl Candidate {
    /// Every category, in the report's order.
    pub const ALL: [Candidate; 13] = [
        Candidate::Name,
        Candidate::Username,
        Candidate::Email,
        Candidate::Phone,
        Candidate::StreetAddress,
        Candidate::GovernmentId,
        Candidate::PreciseLocation,
        Candidate::IpAddress,
        Candidate::PaymentCard,
        Candidate::DateOfBirth,
        Candidate::SignatureImage,
        Candidate::Image,
        Candidate::Document,
    ];

    /// The report's words for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Candidate::Email => "email",
            Candidate::Phone => "phone",
            Candidate::StreetAddress => "street_address",
            Candidate::Name => "name",
            Candidate::Username => "username",
            Candidate::GovernmentId => "government_id",
            Candidate::PreciseLocation => "precise_location",
            Candidate::IpAddress => "ip_address",
            Candidate::PaymentCard => "payment_card",
            Candidate::DateOfBirth => "date_of_birth",
            Candidate::SignatureImage => "signature_image",
            Candidate::Image => "image",
            Candidate::Document => "document",
        }
    }

    /// Its data category, in fideslang's taxonomy (the `category` of a rule that covers it).
    pub fn category(self) -> &'static str {
        match self {
            Candidate::Email => "user.contact.email",
            Candidate::Phone => "user.contact.phone_number",
            Candidate::StreetAddress => "user.contact.address.street",
            Candidate::Name => "user.name",
            Candidate::Username => "user.account.username",
            Candidate::GovernmentId => "user.government_id",
            Candidate::PreciseLocation => "user.location.precise",
            Candidate::IpAddress => "user.device.ip_address",
            Candidate::PaymentCard => "user.financial.credit_card",
            Candidate::DateOfBirth => "user.demographic.date_of_birth",
            Candidate::SignatureImage => "user.biometric.signature",
            Candidate::Image => "user.content.image",
            Candidate::Document => "user.content.document",
        }
    }

    /// The action a suggested rule proposes: `redact` keeps the member and its type visible to
    /// the API's clients; data no other caller has any use for is removed; a card keeps its last
    /// four digits, as receipts do.
    pub fn suggested_action(self) -> &'static str {
        match self {
            Candidate::GovernmentId
            | Candidate::PaymentCard
            | Candidate::SignatureImage
            | Candidate::Image
            | Candidate::Document
            | Candidate::DateOfBirth => "remove",
            _ => "redact",
        }
    }
}

/// Where a value sits: the names that say what it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The member holding the value (an array element: the array's member).
    pub member: Option<&'a str>,
    /// The member holding the object the value is in (`recipient` for `recipient.name`).
    pub parent: Option<&'a str>,
}

impl<'a> Context<'a> {
    /// A value under `member`, in an object under `parent`.
    pub fn new(member: Option<&'a str>, parent: Option<&'a str>) -> Context<'a> {
        Context { member, parent }
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

/// Calendar dates (with a time after them), postal codes (ZIP+4, Brazilian CEP) and customs HS
/// codes (`6109.10.0012`), which look like phone runs.
static NOT_PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4})(?:\s.*)?|\d{5}-\d{3,4}|\d{4}\.\d{2}(?:\.\d{2,4})?)$",
    )
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

/// Candidate IP tokens: dotted quads, and runs of hex digits and colons with at least two colons
/// (ending, for an IPv4-mapped address, in a dotted quad).
/// Each is then parsed by the standard library; the pattern only finds where to look. Known false
/// positive: a four-part version number (`1.2.3.4`) is a valid IPv4 address.
static IP_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b\d{1,3}(?:\.\d{1,3}){3}\b|(?:[0-9a-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{1,4})?(?:%\w+)?",
    )
        .expect("valid pattern")
});

/// Candidate card numbers: 13 to 19 digits, alone or in groups split by single spaces or dashes.
/// Luhn and the networks' prefixes decide; a run glued to other digits is not a card.
static CARD_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d(?:[ -]?\d){12,18}").expect("valid pattern"));

/// Formatted government ids whose shape alone is distinctive: CPF (`123.456.789-09`, check
/// digits verified), CNPJ (`12.345.678/0001-95`, check digits verified), US SSN (`123-45-6789`,
/// with the SSA's impossible areas and groups excluded).
static CPF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b").expect("valid pattern"));
static CNPJ: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}\b").expect("valid pattern"));
static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{3})-(\d{2})-(\d{4})\b").expect("valid pattern"));

/// Tax ids that are only letters and digits: EU VAT numbers by country (the common formats),
/// EORI numbers (an EU country code and 10 to 15 digits; `GB` or `XI` and 12), US EIN
/// (`12-3456789`). Known false positive: a SKU of two capitals and ten or more digits. A value that is
/// exactly one of these is a tax id; inside free text they count only after a keyword
/// ([`TAX_KEYWORD`]), since SKUs can take such shapes.
static TAX_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^(?:
            (?:GB|XI)\d{12}                      # EORI, UK and Northern Ireland
          | (?:GB|XI)\d{9}                        # UK VAT
          | (?:AT|BE|BG|CY|CZ|DE|DK|EE|ES|FI|FR|GR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK)\d{10,15}  # EU EORI
          | DE\d{9} | ATU\d{8} | BE[01]\d{9} | DK\d{8} | FI\d{8} | LU\d{8}
          | FR[0-9A-HJ-NP-Z]{2}\d{9} | IT\d{11} | NL\d{9}B\d{2} | PL\d{10} | PT\d{9} | SE\d{12}
          | ES[0-9A-Z]\d{7}[0-9A-Z] | IE\d{7}[A-W][A-I]? | CZ\d{8,10}
          | \d{2}-\d{7}                           # US EIN
        )$",
    )
    .expect("valid pattern")
});

/// Words that announce a tax or identity number in free text.
static TAX_KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:vat|eori|ein|tin|ssn|cpf|cnpj|tax\s*id|nif|passport)\b[^A-Za-z0-9]{0,5}([A-Z]{0,2}[0-9][0-9A-Z./-]{4,20})")
        .expect("valid pattern")
});

/// Dates in the shapes forms use: ISO `1990-01-31`, `31/01/1990`, `01-31-1990`, `31.01.1990`.
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:(19\d{2}|20\d{2})-(\d{2})-(\d{2})|(\d{1,2})[/.-](\d{1,2})[/.-](19\d{2}|20\d{2}))\b",
    )
    .expect("valid pattern")
});

/// A date of birth announced in free text: `DOB 1990-01-31`, `born 31/01/1990`.
static BIRTH_KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:dob|d\.o\.b\.|born(?:\s+on)?|date\s+of\s+birth|birth\s*date|birthday)\b\W{0,3}\d")
        .expect("valid pattern")
});

/// A latitude, longitude pair in text: `52.520008, 13.404954`, three or more decimals each.
static COORDINATE_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(-?\d{1,2}\.\d{3,})\s*[,;]\s*(-?\d{1,3}\.\d{3,})").expect("valid pattern")
});

/// What a member's name says its value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    Phone,
    Street,
    /// Postal codes are digit runs that are never phone numbers.
    Postal,
    /// Tracking numbers, references and other ids: never a card, a phone or a name.
    Reference,
    /// Customs tariff codes.
    Tariff,
    GovernmentId,
    Birth,
    PersonName,
    Username,
    Signature,
    Label,
    Location,
    Version,
}

/// Names of members holding a person's name outright.
const PERSON_NAME_MEMBERS: &[&str] = &[
    "full_name",
    "fullname",
    "first_name",
    "firstname",
    "last_name",
    "lastname",
    "given_name",
    "family_name",
    "surname",
    "middle_name",
    "recipient_name",
    "consignee_name",
    "shipper_name",
    "sender_name",
    "receiver_name",
    "contact_name",
    "customer_name",
    "attention",
    "attn",
    "signed_by",
    "received_by",
    "signatory",
];

/// Objects whose `name` member is a person's: `recipient.name`, `consignee.name`.
const PERSON_PARENTS: &[&str] = &[
    "recipient",
    "consignee",
    "shipper",
    "sender",
    "receiver",
    "addressee",
    "contact",
    "customer",
    "buyer",
    "to",
    "from",
    "ship_to",
    "bill_to",
    "signer",
    "person",
];

fn hint(member: Option<&str>) -> Option<Hint> {
    let member = member?.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| member.contains(w));
    let is = |words: &[&str]| words.contains(&member.as_str());
    if has(&["postal", "postcode", "zip"]) {
        Some(Hint::Postal)
    } else if has(&[
        "hs_code",
        "hscode",
        "tariff",
        "harmonized",
        "commodity_code",
    ]) {
        Some(Hint::Tariff)
    } else if has(&["version"]) {
        Some(Hint::Version)
    } else if has(&[
        "tax_id",
        "taxid",
        "tax_number",
        "vat",
        "eori",
        "ssn",
        "social_security",
        "national_id",
        "government_id",
        "passport",
        "cpf",
        "cnpj",
        "id_number",
        "document_number",
    ]) || is(&["ein", "tin", "nif", "nie", "dni", "rfc", "curp"])
    {
        Some(Hint::GovernmentId)
    } else if has(&["birth", "dob"]) {
        Some(Hint::Birth)
    } else if has(&["signature"]) {
        Some(Hint::Signature)
    } else if has(&["label", "waybill"]) {
        Some(Hint::Label)
    } else if has(&[
        "tracking",
        "awb",
        "barcode",
        "reference",
        "sku",
        "order",
        "invoice",
        "_id",
        "uuid",
    ]) || is(&["id", "ref"])
    {
        Some(Hint::Reference)
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
    } else if is(PERSON_NAME_MEMBERS) {
        Some(Hint::PersonName)
    } else if has(&["username", "user_name", "login", "handle"]) {
        Some(Hint::Username)
    } else if has(&[
        "location",
        "coordinates",
        "coords",
        "gps",
        "geo",
        "position",
        "latlng",
    ]) {
        Some(Hint::Location)
    } else {
        None
    }
}

/// What a string value looks like, if personal data: the most specific detector that fires.
pub fn classify(context: Context<'_>, value: &str) -> Option<Candidate> {
    let hinted = hint(context.member);
    let value = value.trim();
    // A member that names a picture or a file lets a short bare payload count too.
    let names_media = matches!(hinted, Some(Hint::Signature | Hint::Label))
        || context.member.is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            ["photo", "image", "png", "jpg", "jpeg", "pdf", "picture"]
                .iter()
                .any(|w| m.contains(w))
        });
    if let Some(media) = media(value, if names_media { 24 } else { 100 }) {
        return Some(match (media, hinted) {
            (Media::Image, Some(Hint::Signature)) => Candidate::SignatureImage,
            (_, Some(Hint::Label)) | (Media::Pdf, _) => Candidate::Document,
            (Media::Image, _) => Candidate::Image,
        });
    }
    if hinted != Some(Hint::Version) && has_ip(value) {
        return Some(Candidate::IpAddress);
    }
    if !matches!(hinted, Some(Hint::Reference | Hint::Tariff)) && has_card(value) {
        return Some(Candidate::PaymentCard);
    }
    if is_government_id(
        value,
        hinted == Some(Hint::GovernmentId),
        hinted == Some(Hint::Reference),
    ) {
        return Some(Candidate::GovernmentId);
    }
    if has_coordinates(value) {
        return Some(Candidate::PreciseLocation);
    }
    if (hinted == Some(Hint::Birth) && DATE.is_match(value)) || BIRTH_KEYWORD.is_match(value) {
        return Some(Candidate::DateOfBirth);
    }
    if EMAIL.is_match(value) {
        return Some(Candidate::Email);
    }
    let no_phone = matches!(
        hinted,
        Some(Hint::Postal | Hint::Tariff | Hint::Reference | Hint::Version)
    );
    if !no_phone && has_phone(value, hinted == Some(Hint::Phone)) {
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
    if is_person_name(context, hinted, value) {
        return Some(Candidate::Name);
    }
    if hinted == Some(Hint::Username)
        && (3..=64).contains(&value.chars().count())
        && !value.chars().any(char::is_whitespace)
        && !is_masked(value)
    {
        return Some(Candidate::Username);
    }
    None
}

/// What a number value looks like: a phone number only under a phone member (order ids and
/// amounts are numbers too), a government id only under an id member.
pub fn classify_number(context: Context<'_>, text: &str) -> Option<Candidate> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let integer = text.bytes().all(|b| b.is_ascii_digit());
    match hint(context.member) {
        Some(Hint::Phone) if integer && (7..=15).contains(&digits) => Some(Candidate::Phone),
        Some(Hint::GovernmentId) if integer && digits >= 5 => Some(Candidate::GovernmentId),
        _ => None,
    }
}

/// Whether an object's members make it a precise location: a latitude and a longitude member
/// (`lat`/`latitude` with `lng`/`lon`/`long`/`longitude`), in range, at least one with three or
/// more decimals (about 100 m). `members` are (name, number text) pairs.
pub fn is_coordinate_object(members: &[(&str, &str)]) -> bool {
    let find = |names: &[&str]| {
        members
            .iter()
            .find(|(n, _)| names.contains(&n.to_ascii_lowercase().as_str()))
            .map(|(_, v)| *v)
    };
    match (
        find(&["lat", "latitude"]),
        find(&["lng", "lon", "long", "longitude"]),
    ) {
        (Some(lat), Some(lng)) => precise_pair(lat, lng),
        _ => false,
    }
}

/// Whether an array of two numbers is a precise location: a GeoJSON point's `coordinates`
/// (longitude first), or `[lat, lng]` under a location-like member.
pub fn is_coordinate_array(context: Context<'_>, numbers: &[&str], geojson_point: bool) -> bool {
    if numbers.len() != 2 {
        return false;
    }
    let (a, b) = (numbers[0], numbers[1]);
    if geojson_point {
        return precise_pair(b, a);
    }
    hint(context.member) == Some(Hint::Location) && (precise_pair(a, b) || precise_pair(b, a))
}

fn precise_pair(lat: &str, lng: &str) -> bool {
    let (Ok(la), Ok(lo)) = (lat.trim().parse::<f64>(), lng.trim().parse::<f64>()) else {
        return false;
    };
    let decimals = |t: &str| t.split_once('.').map_or(0, |(_, d)| d.trim().len());
    (-90.0..=90.0).contains(&la)
        && (-180.0..=180.0).contains(&lo)
        && !(la == 0.0 && lo == 0.0)
        && decimals(lat).max(decimals(lng)) >= 3
}

fn has_coordinates(value: &str) -> bool {
    COORDINATE_TEXT
        .captures_iter(value)
        .any(|c| precise_pair(&c[1], &c[2]))
}

/// An IP address anywhere in the value, as the standard library parses it. A token glued to
/// letters, digits or dots on either side is part of something else (a version string, a
/// decimal, a hostname).
fn has_ip(value: &str) -> bool {
    let bytes = value.as_bytes();
    IP_TOKEN.find_iter(value).any(|found| {
        let token = found.as_str();
        let glued = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.');
        if glued(found.start().checked_sub(1).and_then(|i| bytes.get(i)))
            || glued(bytes.get(found.end()))
        {
            return false;
        }
        if token.contains(':') {
            // `12:30:45` is a time; an address has a hex letter, `::`, or more than three groups.
            let groups = token.split(':').count();
            let address = token.split('%').next().unwrap_or_default();
            (token.contains("::") || groups > 3 || token.bytes().any(|b| b.is_ascii_alphabetic()))
                && address.parse::<Ipv6Addr>().is_ok()
                && address.bytes().filter(u8::is_ascii_hexdigit).count() >= 2
        } else {
            token.parse::<Ipv4Addr>().is_ok()
        }
    })
}

/// A payment card number anywhere in the value: 13 to 19 digits (single spaces or dashes between
/// groups allowed) with a card network's prefix and a valid Luhn check digit. Known false
/// positives: about one in ten 13–19 digit numbers starting with 3, 4, 5 or 6 passes Luhn, so a
/// bare reference of that shape can be reported; members named like references are skipped.
fn has_card(value: &str) -> bool {
    let bytes = value.as_bytes();
    CARD_RUN.find_iter(value).any(|found| {
        // A `+` before the run makes it an international phone number.
        let glued = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.');
        let before = found.start().checked_sub(1).and_then(|i| bytes.get(i));
        if glued(before) || before == Some(&b'+') || glued(bytes.get(found.end())) {
            return false;
        }
        let digits: Vec<u8> = found
            .as_str()
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        card_prefix(&digits) && luhn(&digits)
    })
}

/// The IIN ranges of Visa, Mastercard, American Express, Discover, JCB, Diners and UnionPay.
fn card_prefix(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let len = digits.len();
    match digits.first() {
        Some(4) => matches!(len, 13 | 16 | 19),
        Some(5) => (51..=55).contains(&prefix(2)) && len == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && len == 16,
        Some(3) => {
            (matches!(prefix(2), 34 | 37) && len == 15)
                || (prefix(2) == 35 && (16..=19).contains(&len))
                || (matches!(prefix(2), 36 | 38 | 39) && (14..=19).contains(&len))
                || ((300..=305).contains(&prefix(3)) && (14..=19).contains(&len))
        }
        Some(6) => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&len)
                || (prefix(2) == 62 && (16..=19).contains(&len))
        }
        _ => false,
    }
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let double = d * 2;
                if double > 9 { double - 9 } else { double }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the value is (or, in free text, names) a government id: a formatted CPF or CNPJ with
/// valid check digits, an SSN outside the impossible ranges, a value that is exactly a tax id
/// ([`TAX_ID`]), a keyword followed by a number, or, under an id member, any code with digits.
/// Under a reference-like member (`reference`, `order_id`) the shapes without check digits (SSN,
/// EIN, VAT, EORI) are taken for the reference they are said to be.
fn is_government_id(value: &str, hinted: bool, reference: bool) -> bool {
    if CPF.find_iter(value).any(|m| cpf_valid(m.as_str())) {
        return true;
    }
    if CNPJ.find_iter(value).any(|m| cnpj_valid(m.as_str())) {
        return true;
    }
    if !reference
        && SSN.captures_iter(value).any(|c| {
            let area: u32 = c[1].parse().unwrap_or(0);
            area != 0 && area != 666 && area < 900 && &c[2] != "00" && &c[3] != "0000"
        })
    {
        return true;
    }
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if !reference && TAX_ID.is_match(&compact.to_ascii_uppercase()) {
        return true;
    }
    if TAX_KEYWORD.is_match(value) {
        return true;
    }
    hinted
        && !is_masked(value)
        && value.chars().filter(char::is_ascii_alphanumeric).count() >= 5
        && value.chars().any(|c| c.is_ascii_digit())
}

fn digits_of(text: &str) -> Vec<u32> {
    text.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The Brazilian CPF's two check digits (mod 11); all-equal digits are invalid by rule.
fn cpf_valid(text: &str) -> bool {
    let d = digits_of(text);
    if d.len() != 11 || d.iter().all(|x| *x == d[0]) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = (0..n).map(|i| d[i] * (n as u32 + 1 - i as u32)).sum();
        let r = (sum * 10) % 11;
        if r == 10 { 0 } else { r }
    };
    check(9) == d[9] && check(10) == d[10]
}

/// The Brazilian CNPJ's two check digits (mod 11 with weights 2..9 from the right).
fn cnpj_valid(text: &str) -> bool {
    let d = digits_of(text);
    if d.len() != 14 || d.iter().all(|x| *x == d[0]) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = (0..n).map(|i| d[i] * ((n - 1 - i) as u32 % 8 + 2)).sum();
        let r = sum % 11;
        if r < 2 { 0 } else { 11 - r }
    };
    check(12) == d[12] && check(13) == d[13]
}

/// A person's name: under a member that says so (`full_name`, `attention`), or `name` in an
/// object that is a person (`recipient.name`). The value must look like one: one to five words
/// of letters (any script), apostrophes, hyphens and dots, with at least one letter; not a
/// placeholder or a masked value.
fn is_person_name(context: Context<'_>, hinted: Option<Hint>, value: &str) -> bool {
    let person_member = hinted == Some(Hint::PersonName)
        || (context
            .member
            .is_some_and(|m| m.eq_ignore_ascii_case("name"))
            && context
                .parent
                .is_some_and(|p| PERSON_PARENTS.contains(&p.to_ascii_lowercase().as_str())));
    if !person_member || is_masked(value) {
        return false;
    }
    let words: Vec<&str> = value.split_whitespace().collect();
    (1..=5).contains(&words.len())
        && value.chars().any(char::is_alphabetic)
        && words
            .iter()
            .all(|w| w.chars().all(|c| c.is_alphabetic() || "'’-.,".contains(c)))
}

/// Redaction placeholders, masks and pseudonyms: what a rule already did to a value.
fn is_masked(value: &str) -> bool {
    value.starts_with('[') && value.ends_with(']')
        || value.contains("**")
        || value.starts_with("h:")
}

/// What decoded bytes say a payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Image,
    Pdf,
}

/// A base64 payload (a `data:` URI, or a run of base64 at least `bare_min` long) whose decoded
/// first bytes are an image's or a PDF's magic number. Only the first 64 characters are decoded.
fn media(value: &str, bare_min: usize) -> Option<Media> {
    let payload = match value.strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,")?.1,
        None if value.len() >= bare_min => value,
        None => return None,
    };
    let head: String = payload
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(64)
        .collect();
    if head.len() < 16
        || !head
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
    {
        return None;
    }
    let usable = &head[..head.len() / 4 * 4];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(usable)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(usable))
        .ok()?;
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"%PDF-") {
        Some(Media::Pdf)
    } else if starts(b"\x89PNG\r\n\x1a\n")
        || starts(b"\xff\xd8\xff")
        || starts(b"GIF87a")
        || starts(b"GIF89a")
        || (starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP"))
        || starts(b"II*\0")
        || starts(b"MM\0*")
    {
        Some(Media::Image)
    } else {
        None
    }
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

    #[test]
    fn check_digits_are_verified() {
        assert!(cpf_valid("123.456.789-09"));
        assert!(!cpf_valid("123.456.789-00"));
        assert!(!cpf_valid("111.111.111-11"));
        assert!(cnpj_valid("11.222.333/0001-81"));
        assert!(!cnpj_valid("11.222.333/0001-80"));
        let card = |s: &str| digits_of(s).iter().map(|d| *d as u8).collect::<Vec<u8>>();
        assert!(luhn(&card("4111111111111111")));
        assert!(!luhn(&card("4111111111111112")));
        assert!(card_prefix(&card("378282246310005")));
        assert!(!card_prefix(&card("1234567812345670")));
    }

    #[test]
    fn the_most_specific_detector_labels_the_value() {
        let note = Context::new(Some("note"), None);
        let phone = Context::new(Some("phone"), None);
        let cases: &[(Context<'_>, &str, Candidate)] = &[
            (note, "logged from 203.0.113.7", Candidate::IpAddress),
            (phone, "203.0.113.7", Candidate::IpAddress),
            (note, "tax id 123.456.789-09", Candidate::GovernmentId),
            (phone, "123.456.789-09", Candidate::GovernmentId),
            (note, "card 4111 1111 1111 1111", Candidate::PaymentCard),
            (note, "call +1 415 555 0101", Candidate::Phone),
        ];
        for (context, value, want) in cases {
            assert_eq!(classify(*context, value), Some(*want), "{value}");
        }
    }
}
