//! The recipient page: the privacy intake for people with a browser and a tracking number.
//!
//! `GET {privacy.path}` with `Accept: text/html` answers a form; the form posts
//! `application/x-www-form-urlencoded` to the same intake as the JSON clients, with the same rate
//! limit, timing floor and answers ([`super::http`]); the status page is the status endpoint in
//! HTML. Everything here is a pure function from what the endpoint decided to a page: no
//! scripts, no external assets, one inline stylesheet allowed by its hash in the
//! `Content-Security-Policy`, and every value the requester typed escaped before it is written.

use std::fmt::Write as _;
use std::sync::LazyLock;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use sha2::{Digest as _, Sha256};

use super::PublicStatus;
use super::body::{BodyError, FORM_FIELDS};
use crate::config::PageSettings;
use crate::store::outbox::RequestType;
use crate::vocabulary::{GatewayBody, escape_html as escape, full};

/// The page's stylesheet: system fonts, one column that fits a phone, visible focus.
const STYLE: &str = "\
body{font:1rem/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fff}\
main{max-width:36rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;line-height:1.25}\
label,legend{display:block;font-weight:600;margin-top:1rem}\
fieldset{border:0;padding:0;margin:0}\
fieldset label{font-weight:400;margin-top:.25rem}\
input[type=email],input[type=tel],input[type=text],textarea{box-sizing:border-box;width:100%;\
font:inherit;padding:.5rem;border:2px solid #505a5f;border-radius:0}\
textarea{min-height:6rem}\
.hint{color:#505a5f;margin:.25rem 0}\
.error{color:#b00020;font-weight:600;margin:.25rem 0}\
[aria-invalid=true]{border-color:#b00020}\
.summary{border:4px solid #b00020;padding:0 1rem;margin:1rem 0}\
button{font:inherit;font-weight:600;margin-top:1.5rem;padding:.6rem 1.2rem;border:0;\
background:#00703c;color:#fff;cursor:pointer}\
:focus{outline:3px solid #fd0;outline-offset:0}\
code{font-size:1.1rem;word-break:break-all}\
.controller{border-left:4px solid #00703c;padding-left:1rem}";

/// The `Content-Security-Policy` of every page: nothing may load, run or frame it; only the
/// inline stylesheet above (by its hash) and a form posted back to the gateway itself.
static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    HeaderValue::try_from(format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         base-uri 'none'; frame-ancestors 'none'"
    ))
    .expect("base64 is a valid header value")
});

/// The request types in the order the form offers them, in plain words.
const KINDS: &[(RequestType, &str)] = &[
    (RequestType::Access, "Get a copy of my personal data"),
    (RequestType::Delete, "Delete my personal data"),
    (RequestType::Correct, "Correct my personal data"),
    (RequestType::OptOut, "Do not sell or share my personal data"),
    (
        RequestType::LimitSensitive,
        "Limit the use of my sensitive personal data",
    ),
];

/// Whether the caller would rather read HTML than JSON: `text/html` is acceptable and ranks
/// above `application/json` (a browser's `Accept`). Ties, `*/*` and no `Accept` mean JSON, so
/// scripts keep the contract's answers.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let mut html = 0.0_f32;
    let mut json = 0.0_f32;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "text/html" | "application/xhtml+xml" => html = html.max(q),
                "application/json" | "application/*" | "*/*" => json = json.max(q),
                _ => {}
            }
        }
    }
    html > 0.0 && html > json
}

/// An HTML answer with the page's security headers; never cached, since most pages hold the
/// requester's own data or say something about it.
pub fn html_response(status: StatusCode, page: String) -> Response<GatewayBody> {
    let mut response = Response::new(full(Bytes::from(page)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY.clone(),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// What the requester typed, written back into the form after a refusal so nothing is retyped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Typed {
    /// Field name and value, as posted.
    pub fields: Vec<(String, String)>,
}

impl Typed {
    fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The form, empty or after a refusal: every problem in `errors` is summarised on top, each a
/// link to its field, and marked at the field.
pub fn form(settings: &PageSettings, action: &str, typed: &Typed, errors: &[BodyError]) -> String {
    let mut page = String::new();
    let field_error = |name: &str| errors.iter().find(|e| e.field == Some(name));
    let title = if !errors.is_empty() {
        "Error: Ask about your personal data"
    } else {
        "Ask about your personal data"
    };
    head(&mut page, title, &settings.platform_name);
    page.push_str("<h1>Ask about your personal data</h1>\n");
    introduction(&mut page, settings);
    if !errors.is_empty() {
        page.push_str(
            "<div class=\"summary\" role=\"alert\" tabindex=\"-1\"><h2>Please check the form</h2>\n<ul>\n",
        );
        for error in errors {
            let anchor = error.field.unwrap_or("type");
            let _ = writeln!(
                page,
                "<li><a href=\"#{anchor}\">{}</a></li>",
                escape(&error.plain)
            );
        }
        page.push_str("</ul></div>\n");
    }
    let _ = writeln!(
        page,
        "<form method=\"post\" action=\"{}\" novalidate>",
        escape(action)
    );

    // The request type: one radio button per right, in a fieldset so it is announced as a group.
    let chosen = typed.get("type");
    let type_error = field_error("type");
    let _ = writeln!(
        page,
        "<fieldset id=\"type\"{}><legend>What are you asking for?</legend>",
        if type_error.is_some() {
            " aria-describedby=\"type-error\""
        } else {
            ""
        }
    );
    error_line(&mut page, "type", type_error);
    for (kind, words) in KINDS {
        let value = kind.as_str();
        let checked = if chosen == value { " checked" } else { "" };
        let _ = writeln!(
            page,
            "<label><input type=\"radio\" name=\"type\" value=\"{value}\"{checked}> {words}</label>"
        );
    }
    page.push_str("</fieldset>\n");

    field(
        &mut page,
        &Field {
            name: "email",
            label: "Your e-mail address",
            hint: "The address the sender used for your parcel. Give it, your phone number, or both.",
            input: "type=\"email\" autocomplete=\"email\" spellcheck=\"false\"",
        },
        typed,
        field_error("email"),
    );
    field(
        &mut page,
        &Field {
            name: "phone",
            label: "Your phone number",
            hint: "The number the sender used for your parcel, with its country code.",
            input: "type=\"tel\" autocomplete=\"tel\"",
        },
        typed,
        field_error("phone"),
    );
    field(
        &mut page,
        &Field {
            name: "tracking_number",
            label: "Tracking number (optional)",
            hint: "The tracking number of a parcel sent to you proves that the parcel is yours. \
                   With it, we can tell you which business sent it and how to reach them. Without \
                   it, your request is still forwarded, but we tell no one, you included, who \
                   holds data about you.",
            input: "type=\"text\" autocomplete=\"off\" spellcheck=\"false\"",
        },
        typed,
        field_error("tracking_number"),
    );
    field(
        &mut page,
        &Field {
            name: "details",
            label: "Details (optional)",
            hint: "Anything the business needs to know to answer you, such as what should be corrected.",
            input: "",
        },
        typed,
        field_error("details"),
    );
    field(
        &mut page,
        &Field {
            name: "reply_to",
            label: "Where to answer you (optional)",
            hint: "An e-mail address for the answer, if not the one above.",
            input: "type=\"email\" autocomplete=\"email\" spellcheck=\"false\"",
        },
        typed,
        field_error("reply_to"),
    );
    page.push_str("<button type=\"submit\">Send request</button>\n</form>\n");
    foot(&mut page);
    page
}

/// The confirmation: the request id, the status link, and the controllers only when the
/// tracking number proved the parcel (an unverified request reads the same whether or not anyone
/// holds data about the requester).
pub fn received(
    settings: &PageSettings,
    request_id: &str,
    status_href: &str,
    message: &str,
    controllers: &[(&str, Option<&str>)],
) -> String {
    let mut page = String::new();
    head(&mut page, "Request received", &settings.platform_name);
    page.push_str("<h1>Your request has been received</h1>\n");
    let _ = write!(
        page,
        "<p>Your request number is <code id=\"request-id\">{}</code>. Keep it to check on your \
         request.</p>\n<p>{}</p>\n",
        escape(request_id),
        escape(message)
    );
    if !controllers.is_empty() {
        page.push_str(
            "<h2>Who holds your data</h2>\n<p>Your tracking number shows that this parcel was \
             sent by the business below. It decides what happens to your data, and it will \
             answer you.</p>\n",
        );
        for (name, contact) in controllers {
            let _ = write!(
                page,
                "<div class=\"controller\"><p><strong class=\"controller-name\">{}</strong></p>",
                escape(name)
            );
            if let Some(contact) = contact {
                let _ = write!(page, "<p>Privacy contact: {}</p>", escape(contact));
            }
            page.push_str("</div>\n");
        }
    }
    let _ = writeln!(
        page,
        "<p><a id=\"status-link\" href=\"{}\">Check the status of your request</a></p>",
        escape(status_href)
    );
    foot(&mut page);
    page
}

/// The status page of one request.
pub fn status(
    settings: &PageSettings,
    request_id: &str,
    status: PublicStatus,
    received_at: &str,
) -> String {
    let words = match status {
        PublicStatus::Received => {
            "Received. If a business that sends parcels through us holds data about you, your \
             request is on its way to them."
        }
        PublicStatus::Forwarded => "Forwarded to the business that holds your data.",
        PublicStatus::Acknowledged => {
            "The business that holds your data has confirmed that it received your request."
        }
        PublicStatus::Dead => {
            "We could not forward your request. Please contact the business that sent your \
             parcel directly."
        }
    };
    let mut page = String::new();
    head(&mut page, "Request status", &settings.platform_name);
    page.push_str("<h1>Your privacy request</h1>\n<dl>\n");
    let _ = write!(
        page,
        "<dt>Request number</dt><dd><code>{}</code></dd>\n\
         <dt>Received</dt><dd>{}</dd>\n\
         <dt>Status</dt><dd id=\"status\" data-status=\"{}\">{}</dd>\n</dl>\n",
        escape(request_id),
        escape(received_at),
        status.as_str(),
        words
    );
    foot(&mut page);
    page
}

/// A page for a refusal that is not about a field: rate limit, unknown request, store down;
/// with a way back to the form at `form_href`.
pub fn problem(settings: &PageSettings, form_href: &str, title: &str, message: &str) -> String {
    let mut page = String::new();
    head(&mut page, title, &settings.platform_name);
    let _ = write!(
        page,
        "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"{}\">Back to the privacy request form</a></p>\n",
        escape(title),
        escape(message),
        escape(form_href)
    );
    foot(&mut page);
    page
}

/// One labelled input (or textarea for `details`) with its hint and error.
struct Field {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    input: &'static str,
}

fn field(page: &mut String, field: &Field, typed: &Typed, error: Option<&BodyError>) {
    let name = field.name;
    let hint_id = format!("{name}-hint");
    let error_id = format!("{name}-error");
    let described = match error {
        Some(_) => format!("{hint_id} {error_id}"),
        None => hint_id.clone(),
    };
    let invalid = if error.is_some() {
        " aria-invalid=\"true\""
    } else {
        ""
    };
    let max = FORM_FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, max)| *max);
    let _ = write!(
        page,
        "<label for=\"{name}\">{}</label>\n<p class=\"hint\" id=\"{hint_id}\">{}</p>\n",
        field.label, field.hint
    );
    error_line(page, name, error);
    let value = escape(typed.get(name));
    if name == "details" {
        let _ = writeln!(
            page,
            "<textarea id=\"{name}\" name=\"{name}\" maxlength=\"{max}\" \
             aria-describedby=\"{described}\"{invalid}>{value}</textarea>"
        );
    } else {
        let _ = writeln!(
            page,
            "<input id=\"{name}\" name=\"{name}\" {} maxlength=\"{max}\" \
             aria-describedby=\"{described}\"{invalid} value=\"{value}\">",
            field.input
        );
    }
}

fn error_line(page: &mut String, name: &str, error: Option<&BodyError>) {
    if let Some(error) = error {
        let _ = writeln!(
            page,
            "<p class=\"error\" id=\"{name}-error\">{}</p>",
            escape(&error.plain)
        );
    }
}

fn head(page: &mut String, title: &str, platform: &str) {
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(title),
        escape(platform)
    );
}

fn introduction(page: &mut String, settings: &PageSettings) {
    let platform = escape(&settings.platform_name);
    let _ = write!(
        page,
        "<p>{platform} carries shipment data for the businesses that send parcels through it, \
         on their behalf. The business that sent your parcel decides what happens to your \
         personal data, and it answers privacy requests about it.</p>\n\
         <p>Use this form to ask about your data. {platform} forwards your request to the \
         business that holds it, and does not answer it itself.</p>\n"
    );
    if let Some(text) = &settings.text {
        let _ = writeln!(page, "<p>{}</p>", escape(text));
    }
}

fn foot(page: &mut String) {
    page.push_str("</main>\n</body>\n</html>\n");
}
