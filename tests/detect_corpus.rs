//! The personal-data detectors of `check --samples` against a corpus: real-looking values of every
//! category the privacy policy names, in several countries' formats, and ordinary shipping fields
//! that must never fire. Prints precision and recall per category (the table in
//! docs/reviewing-redaction.md) and requires recall of at least 0.95 per category with no false
//! positive among the shipping fields.
//!
//! Each entry: what it must be found as (`None`: nothing), the member holding it and the member
//! holding its object, and the value as JSON. Objects and arrays are judged as the coverage walk
//! judges them: a latitude/longitude object, a GeoJSON point, a pair under a location member.

use base64::Engine as _;
use recipient_gateway::review::detect::{self, Candidate, Context};
use serde_json::Value;

use Candidate::*;

type Entry = (
    Option<Candidate>,
    &'static str,
    Option<&'static str>,
    String,
);

fn entry(
    want: Option<Candidate>,
    member: &'static str,
    parent: Option<&'static str>,
    value: &str,
) -> Entry {
    (want, member, parent, value.to_string())
}

/// A JSON string holding `bytes` as base64, with a `data:` URI prefix when given.
fn base64_of(bytes: &[u8], data_uri: Option<&str>) -> String {
    let mut payload = bytes.to_vec();
    payload.extend(std::iter::repeat_n(0x5a, 120)); // the rest of the file
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
    let text = match data_uri {
        Some(mime) => format!("data:{mime};base64,{encoded}"),
        None => encoded,
    };
    Value::String(text).to_string()
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
const GIF: &[u8] = b"GIF89a\x01\0\x01\0";
const WEBP: &[u8] = b"RIFF\x24\0\0\0WEBPVP8 ";

fn s(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// Values that are personal data, with the category each must be labelled with.
fn personal() -> Vec<Entry> {
    let mut corpus = vec![
        // Names: by the member that holds them, in several scripts and conventions.
        entry(Some(Name), "name", Some("recipient"), &s("Jane Doe")),
        entry(
            Some(Name),
            "name",
            Some("consignee"),
            &s("José Álvarez García"),
        ),
        entry(Some(Name), "full_name", None, &s("Rahul Mehta")),
        entry(Some(Name), "attention", None, &s("Dr. Anna Müller")),
        entry(Some(Name), "recipient_name", None, &s("李小龍")),
        entry(Some(Name), "first_name", None, &s("Ana")),
        entry(Some(Name), "last_name", None, &s("O'Brien")),
        entry(Some(Name), "name", Some("shipper"), &s("Jean-Luc Picard")),
        entry(Some(Name), "contact_name", None, &s("Aiyana Yazzie")),
        entry(Some(Name), "name", Some("ship_to"), &s("MARIA DA SILVA")),
        entry(Some(Name), "attn", None, &s("Søren Kierkegaard")),
        entry(Some(Name), "signed_by", None, &s("K. Tanaka")),
        entry(Some(Name), "received_by", Some("pod"), &s("Ngozi Okonkwo")),
        entry(Some(Name), "name", Some("sender"), &s("Иван Петров")),
        // Usernames.
        entry(Some(Username), "username", None, &s("jdoe42")),
        entry(Some(Username), "login", None, &s("rahul.mehta")),
        entry(Some(Username), "user_name", None, &s("ana_lima")),
        entry(Some(Username), "handle", None, &s("@janedoe")),
        // E-mail addresses.
        entry(Some(Email), "email", None, &s("jane.doe@example.com")),
        entry(
            Some(Email),
            "contact",
            None,
            &s("Rahul <rahul+ship@example.co.uk>"),
        ),
        entry(Some(Email), "note", None, &s("reach me at a@b")),
        entry(Some(Email), "email", None, &s("müller@beispiel.de")),
        // Phone numbers, several countries.
        entry(Some(Phone), "phone", None, &s("+1 415 555 0101")),
        entry(Some(Phone), "phone", None, &s("+44 20 7946 0958")),
        entry(Some(Phone), "mobile", None, &s("+4915112345678")),
        entry(Some(Phone), "phone", None, &s("+55 11 91234-5678")),
        entry(Some(Phone), "phone", None, &s("+91 98765 43210")),
        entry(Some(Phone), "tel", None, &s("03-1234-5678")),
        entry(Some(Phone), "phone", None, "4155550101"),
        entry(
            Some(Phone),
            "delivery_note",
            None,
            &s("call (415) 555-0101 after 5"),
        ),
        entry(Some(Phone), "contact", None, &s("415.555.0101")),
        // Street addresses.
        entry(Some(StreetAddress), "street", None, &s("1 Market St")),
        entry(Some(StreetAddress), "line", None, &s("221B Baker Street")),
        entry(Some(StreetAddress), "address", None, &s("350 Fifth Avenue")),
        entry(
            Some(StreetAddress),
            "address",
            None,
            &s("Av. Paulista 1000"),
        ),
        entry(
            Some(StreetAddress),
            "address",
            None,
            &s("Calle de Alcalá 42"),
        ),
        entry(Some(StreetAddress), "address", None, &s("Rue de Rivoli 10")),
        entry(Some(StreetAddress), "address", None, &s("Hauptstraße 5")),
        entry(Some(StreetAddress), "address_line2", None, &s("Apt 4B")),
        entry(
            Some(StreetAddress),
            "note",
            None,
            &s("leave it at 10 Downing Street, thanks"),
        ),
        // Government ids: tax ids for customs, social security, passports.
        entry(Some(GovernmentId), "tax_id", None, &s("123.456.789-09")),
        entry(Some(GovernmentId), "document", None, &s("123.456.789-09")),
        entry(Some(GovernmentId), "cnpj", None, &s("11.222.333/0001-81")),
        entry(
            Some(GovernmentId),
            "company_id",
            None,
            &s("11.222.333/0001-81"),
        ),
        entry(Some(GovernmentId), "cpf", None, &s("12345678909")),
        entry(Some(GovernmentId), "ssn", None, &s("123-45-6789")),
        entry(
            Some(GovernmentId),
            "note",
            None,
            &s("SSN 123-45-6789 on file"),
        ),
        entry(Some(GovernmentId), "importer", None, &s("12-3456789")),
        entry(Some(GovernmentId), "vat_number", None, &s("DE123456789")),
        entry(
            Some(GovernmentId),
            "importer_vat",
            None,
            &s("FR40303265045"),
        ),
        entry(Some(GovernmentId), "buyer", None, &s("GB123456789")),
        entry(Some(GovernmentId), "eori", None, &s("GB123456789000")),
        entry(Some(GovernmentId), "importer", None, &s("DE1234567890123")),
        entry(Some(GovernmentId), "buyer", None, &s("IT12345678901")),
        entry(Some(GovernmentId), "buyer", None, &s("NL123456789B01")),
        entry(Some(GovernmentId), "buyer", None, &s("ESX1234567X")),
        entry(Some(GovernmentId), "passport_number", None, &s("X1234567")),
        entry(Some(GovernmentId), "national_id", None, "123456789"),
        entry(
            Some(GovernmentId),
            "customs_note",
            None,
            &s("EORI GB123456789000 for clearance"),
        ),
        entry(
            Some(GovernmentId),
            "customs_note",
            None,
            &s("tax id: 123.456.789-09"),
        ),
        // Precise geolocation: proof-of-delivery fixes.
        entry(
            Some(PreciseLocation),
            "pod",
            None,
            r#"{"lat": 52.520008, "lng": 13.404954}"#,
        ),
        entry(
            Some(PreciseLocation),
            "fix",
            None,
            r#"{"latitude": -23.550520, "longitude": -46.633308}"#,
        ),
        entry(
            Some(PreciseLocation),
            "geometry",
            None,
            r#"{"type": "Point", "coordinates": [-0.127758, 51.507351]}"#,
        ),
        entry(
            Some(PreciseLocation),
            "location",
            None,
            "[48.858370, 2.294481]",
        ),
        entry(
            Some(PreciseLocation),
            "gps",
            None,
            &s("37.774929,-122.419416"),
        ),
        entry(
            Some(PreciseLocation),
            "note",
            None,
            &s("POD at 35.689487, 139.691706"),
        ),
        // IP addresses, v4 and v6, alone and in text.
        entry(Some(IpAddress), "ip", None, &s("203.0.113.7")),
        entry(Some(IpAddress), "client_ip", None, &s("2001:db8::1")),
        entry(
            Some(IpAddress),
            "note",
            None,
            &s("created from 198.51.100.23 by the app"),
        ),
        entry(Some(IpAddress), "origin", None, &s("::ffff:192.0.2.128")),
        entry(
            Some(IpAddress),
            "device",
            None,
            &s("fe80::1ff:fe23:4567:890a"),
        ),
        entry(Some(IpAddress), "phone", None, &s("10.0.0.1")),
        // Payment cards (test numbers of each network).
        entry(Some(PaymentCard), "card", None, &s("4111 1111 1111 1111")),
        entry(Some(PaymentCard), "card", None, &s("5500-0000-0000-0004")),
        entry(Some(PaymentCard), "payment", None, &s("378282246310005")),
        entry(
            Some(PaymentCard),
            "card_number",
            None,
            &s("6011111111111117"),
        ),
        entry(
            Some(PaymentCard),
            "note",
            None,
            &s("paid with 4012888888881881 yesterday"),
        ),
        entry(Some(PaymentCard), "pan", None, &s("3530111333300000")),
        entry(Some(PaymentCard), "pan", None, &s("30569309025904")),
        entry(Some(PaymentCard), "pan", None, &s("2223000048400011")),
        // Dates of birth (age-restricted deliveries).
        entry(Some(DateOfBirth), "dob", None, &s("1990-01-31")),
        entry(Some(DateOfBirth), "date_of_birth", None, &s("31/01/1990")),
        entry(Some(DateOfBirth), "birthdate", None, &s("01-31-1990")),
        entry(Some(DateOfBirth), "birth_date", None, &s("31.01.1990")),
        entry(
            Some(DateOfBirth),
            "note",
            None,
            &s("DOB 1985-07-04, check ID"),
        ),
        entry(Some(DateOfBirth), "note", None, &s("born on 12/03/1979")),
    ];
    // Images and documents, by their decoded magic bytes.
    corpus.extend([
        entry(
            Some(SignatureImage),
            "signature",
            None,
            &base64_of(PNG, Some("image/png")),
        ),
        entry(
            Some(SignatureImage),
            "signature_image",
            None,
            &base64_of(JPEG, None),
        ),
        entry(
            Some(SignatureImage),
            "recipient_signature",
            None,
            &base64_of(GIF, None),
        ),
        entry(
            Some(Image),
            "photo",
            None,
            &base64_of(JPEG, Some("image/jpeg")),
        ),
        entry(Some(Image), "pod_photo", None, &base64_of(PNG, None)),
        entry(
            Some(Image),
            "proof",
            None,
            &base64_of(WEBP, Some("image/webp")),
        ),
        entry(
            Some(Document),
            "label",
            None,
            &base64_of(PDF, Some("application/pdf")),
        ),
        entry(Some(Document), "label_png", None, &base64_of(PNG, None)),
        entry(
            Some(Document),
            "shipping_label",
            None,
            &base64_of(PDF, None),
        ),
        entry(Some(Document), "invoice_pdf", None, &base64_of(PDF, None)),
    ]);
    corpus
}

/// Ordinary shipping fields: none may be reported.
fn shipping() -> Vec<Entry> {
    let none = |member: &'static str, parent: Option<&'static str>, value: &str| {
        entry(None, member, parent, value)
    };
    vec![
        // Tracking numbers of the big carriers.
        none("tracking_number", None, &s("1Z999AA10123456784")),
        none("tracking_number", None, &s("449044304137821")),
        none("tracking_number", None, &s("123456789012")),
        none("tracking_number", None, &s("9400111899223100000000")),
        none(
            "tracking_number",
            None,
            &s("420941039400111899223100000000"),
        ),
        none("tracking_number", None, &s("1234567890")),
        none("tracking_number", None, &s("GM2951173225174494")),
        none("tracking_number", None, &s("AB123456789GB")),
        none("tracking_number", None, &s("LK123456789CN")),
        none("tracking_number", None, &s("TBA123456789000")),
        none("tracking", None, &s("4111111111111111")),
        none("awb", None, &s("020-12345675")),
        // Ids and references.
        none("id", None, &s("shp_0001234567")),
        none("order_id", None, &s("ord-2026-000123")),
        none("customer_id", None, &s("cus_9f8e7d6c")),
        none("order_id", None, "12345678"),
        none("invoice_number", None, &s("INV-2026-00042")),
        none("reference", None, &s("4155550101")),
        none("reference", None, &s("12-3456789")),
        none("reference", None, &s("123-45-6789")),
        // Amounts.
        none("amount", None, &s("1234.56")),
        none("amount", None, "1234.56"),
        none("declared_value", None, &s("USD 99.99")),
        none("price", None, &s("€12,50")),
        none("total", None, &s("1234567.89")),
        // Dates and timestamps.
        none("shipped_on", None, &s("2026-11-29")),
        none("created_at", None, &s("2026-11-29T18:51:25Z")),
        none("delivered_at", None, &s("2026-11-29 18:51:25+01:00")),
        none("due", None, &s("29/11/2026")),
        none("eta", None, &s("Nov 29, 2026")),
        none("window", None, &s("18:51:25")),
        // SKUs, UUIDs, hashes.
        none("sku", None, &s("SKU-12345-BLU-XL")),
        none("sku", None, &s("TSHIRT-RED-M")),
        none("item", None, &s("AB-1234567")),
        none("uuid", None, &s("123e4567-e89b-12d3-a456-426614174000")),
        none("request", None, &s("550e8400-e29b-41d4-a716-446655440000")),
        none(
            "checksum",
            None,
            &s("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ),
        none("etag", None, &s("d41d8cd98f00b204e9800998ecf8427e")),
        none("email", None, &s("h:5f2b7c0e9a1d4e3f8b6a7c9d0e1f2a3b")),
        none("email", None, &s("[REDACTED]")),
        none("email", None, &s("ja**************")),
        none("name", Some("recipient"), &s("[REDACTED]")),
        // Dimensions and weights.
        none("dimensions", None, &s("30x20x15 cm")),
        none("dimensions", None, &s("12.5 x 8 x 3 in")),
        none("weight", None, &s("2.5 kg")),
        none("weight_kg", None, "12.0"),
        none("note", None, &s("weighs 12 kg and goes by road")),
        none("note", None, &s("Ships in 2 days")),
        // Customs HS codes.
        none("hs_code", None, &s("6109.10.0012")),
        none("description", None, &s("6109.10.0012")),
        none("hs_code", None, &s("8471.30")),
        none("tariff_code", None, &s("610910")),
        none("commodity", None, &s("6109.10")),
        // Everything else a shipment carries.
        none("status", None, &s("in_transit")),
        none("service", None, &s("ground")),
        none("service_name", None, &s("Express Saver")),
        none("country", None, &s("US")),
        none("postal_code", None, &s("94105")),
        none("postal_code", None, &s("01310-100")),
        none("postal_code", None, &s("NW1 6XE")),
        none("city", None, &s("San Francisco")),
        none("currency", None, &s("EUR")),
        none("version", None, &s("1.2.3")),
        none("api_version", None, &s("1.2.3.4")),
        none("carrier", None, &s("UPS")),
        none("name", Some("items"), &s("Blue T-Shirt")),
        none("product_name", None, &s("Wireless Mouse")),
        none("name", Some("carrier"), &s("DHL Express")),
        none("name", Some("warehouse"), &s("Berlin Hub 2")),
        none(
            "label_url",
            None,
            &s("https://labels.example.com/1Z999AA10123456784.pdf"),
        ),
        none("label_format", None, &s("PDF")),
        none("pieces", None, "12"),
        none("location", None, &s("Berlin Hub 2")),
        none("warehouse", None, r#"{"lat": 52.5, "lng": 13.4}"#),
        none(
            "origin",
            None,
            r#"{"type": "Point", "coordinates": [0, 0]}"#,
        ),
        none("boxes", None, "[30, 20]"),
        none("description", None, &s("Cotton T-shirts, 12 pcs")),
    ]
}

/// What the coverage walk reports for one value.
fn detect_value(member: &str, parent: Option<&str>, json: &str) -> Option<Candidate> {
    let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    let context = Context::new(Some(member), parent);
    match &value {
        Value::String(text) => detect::classify(context, text),
        Value::Number(n) => detect::classify_number(context, &n.to_string()),
        Value::Object(map) => {
            let numbers: Vec<(String, String)> = map
                .iter()
                .filter(|(_, v)| v.is_number())
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            let members: Vec<(&str, &str)> = numbers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if detect::is_coordinate_object(&members) {
                return Some(PreciseLocation);
            }
            let point = map.get("type") == Some(&Value::from("Point"));
            let coordinates = map.get("coordinates").and_then(Value::as_array)?;
            let texts: Vec<String> = coordinates.iter().map(Value::to_string).collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            detect::is_coordinate_array(
                Context::new(Some("coordinates"), Some(member)),
                &texts,
                point,
            )
            .then_some(PreciseLocation)
        }
        Value::Array(items) => {
            let texts: Vec<String> = items.iter().map(Value::to_string).collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            detect::is_coordinate_array(context, &texts, false).then_some(PreciseLocation)
        }
        Value::Null | Value::Bool(_) => None,
    }
}

#[test]
fn every_category_is_found_and_no_shipping_field_is() {
    let personal = personal();
    let shipping = shipping();
    let mut misses = Vec::new();
    let mut table = String::from(
        "| category | kind | values | found | precision | recall |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    let results: Vec<(Option<Candidate>, Option<Candidate>)> = personal
        .iter()
        .chain(&shipping)
        .map(|(want, member, parent, json)| {
            let got = detect_value(member, *parent, json);
            if got != *want {
                misses.push(format!("{member} = {json}: want {want:?}, got {got:?}"));
            }
            (*want, got)
        })
        .collect();
    let mut worst_recall: f64 = 1.0;
    for kind in Candidate::ALL {
        let tp = results
            .iter()
            .filter(|(w, g)| *w == Some(kind) && *g == Some(kind))
            .count();
        let fn_ = results
            .iter()
            .filter(|(w, g)| *w == Some(kind) && *g != Some(kind))
            .count();
        let fp = results
            .iter()
            .filter(|(w, g)| *w != Some(kind) && *g == Some(kind))
            .count();
        let precision = if tp + fp == 0 {
            1.0
        } else {
            tp as f64 / (tp + fp) as f64
        };
        let recall = tp as f64 / (tp + fn_) as f64;
        worst_recall = worst_recall.min(recall);
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {:.2} | {:.2} |\n",
            kind.category(),
            kind.as_str(),
            tp + fn_,
            tp,
            precision,
            recall
        ));
    }
    let false_positives: Vec<String> = shipping
        .iter()
        .filter_map(|(_, member, parent, json)| {
            detect_value(member, *parent, json).map(|got| format!("{member} = {json}: {got:?}"))
        })
        .collect();
    table.push_str(&format!(
        "\n{} personal values, {} shipping fields, {} shipping fields reported.\n",
        personal.len(),
        shipping.len(),
        false_positives.len()
    ));
    eprintln!("{table}");
    for miss in &misses {
        eprintln!("miss: {miss}");
    }
    assert!(
        false_positives.is_empty(),
        "false positives: {false_positives:#?}"
    );
    assert!(worst_recall >= 0.95, "recall below 0.95: {misses:#?}");
    assert!(misses.is_empty(), "mislabelled or missed: {misses:#?}");
}
