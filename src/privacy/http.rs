//! The privacy endpoints on the main listener (reference §5).
//!
//! Public: `POST {privacy.path}` (intake) and `GET {privacy.path}/{id}` (status), in JSON for
//! scripts and in HTML for a browser: `GET {privacy.path}` with `Accept: text/html` is the
//! recipient page, whose form posts to the same intake ([`super::page`]). Customers, with
//! their API key (the gateway authenticates before calling in here): `GET /v1/privacy/requests`
//! (inbox), `POST /v1/privacy/requests/{id}/ack`, `POST /v1/privacy/erasures`. These paths are
//! answered by the gateway itself and never reach an upstream.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::body;
use super::error::PrivacyError;
use super::limit::{self, retry_after_secs};
use super::page::{self, Typed};
use super::{Desk, format_id, parse_id, rfc3339};
use crate::config::{Client, ClientKind, Config};
use crate::store::outbox::{DeliveryStatus, InboxItem, RequestId};
use crate::vocabulary::{GatewayBody, is_json_media, json_response, media_type};

/// The recipient page's form encoding.
const FORM_MEDIA: &str = "application/x-www-form-urlencoded";

/// Path of the customers' inbox.
pub const INBOX_PATH: &str = "/v1/privacy/requests";
/// Path of the customers' erasure instruction.
pub const ERASURE_PATH: &str = "/v1/privacy/erasures";
/// Largest privacy body accepted (bytes).
const MAX_BODY: usize = 16 * 1024;
/// Every intake answer takes at least this long, so its timing does not tell whether the
/// requester's data was found (the work behind it is a few store round trips either way).
pub const INTAKE_FLOOR: Duration = Duration::from_millis(100);
/// Inbox entries per answer when the caller does not say.
const INBOX_DEFAULT: u32 = 100;
/// Most inbox entries per answer.
const INBOX_MAX: u32 = 1000;
/// The same words for every intake answer: they say what happens, not what was found.
pub const RECEIVED_MESSAGE: &str = "Your request has been received. If a customer of this \
     platform holds data about you, it has been forwarded to them; they will answer you.";

/// A privacy endpoint, recognised by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST {privacy.path}`
    Intake,
    /// `GET {privacy.path}/{id}` (`None`: not a well-formed id).
    Status(Option<RequestId>),
    /// `GET /v1/privacy/requests`
    Inbox,
    /// `POST /v1/privacy/requests/{id}/ack`
    Ack(Option<RequestId>),
    /// `POST /v1/privacy/erasures`
    Erasure,
}

impl Endpoint {
    /// The endpoint at `path`, if it is one.
    pub fn of(intake_path: &str, path: &str) -> Option<Endpoint> {
        if path == intake_path {
            return Some(Endpoint::Intake);
        }
        if path == INBOX_PATH {
            return Some(Endpoint::Inbox);
        }
        if path == ERASURE_PATH {
            return Some(Endpoint::Erasure);
        }
        if let Some(rest) = path
            .strip_prefix(INBOX_PATH)
            .and_then(|r| r.strip_prefix('/'))
            && let Some(id) = rest.strip_suffix("/ack")
            && !id.contains('/')
        {
            return Some(Endpoint::Ack(parse_id(id)));
        }
        if let Some(id) = path
            .strip_prefix(intake_path)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|id| !id.contains('/'))
        {
            return Some(Endpoint::Status(parse_id(id)));
        }
        None
    }

    /// The `route` label of its metrics and log lines.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Intake => "privacy_intake",
            Endpoint::Status(_) => "privacy_status",
            Endpoint::Inbox => "privacy_inbox",
            Endpoint::Ack(_) => "privacy_ack",
            Endpoint::Erasure => "privacy_erasure",
        }
    }

    /// Whether it needs a customer's API key.
    pub fn for_customers(self) -> bool {
        matches!(self, Endpoint::Inbox | Endpoint::Ack(_) | Endpoint::Erasure)
    }

    fn method(self) -> Method {
        match self {
            Endpoint::Status(_) | Endpoint::Inbox => Method::GET,
            Endpoint::Intake | Endpoint::Ack(_) | Endpoint::Erasure => Method::POST,
        }
    }
}

/// What an endpoint call needs besides the request.
pub struct Call<'a> {
    /// The desk.
    pub desk: &'a Desk,
    /// The config the request started on.
    pub config: &'a Config,
    /// The client's address (rate limit).
    pub ip: IpAddr,
    /// The authenticated customer, for customer endpoints.
    pub caller: Option<Arc<Client>>,
    /// The gateway's request id, for error bodies.
    pub request_id: &'a str,
}

impl Call<'_> {
    /// Answers `request` at `endpoint`.
    /// A browser (by its `Accept`, or by posting the form) is answered in HTML throughout,
    /// refusals included; everything else gets the contract's JSON.
    pub async fn serve(
        self,
        endpoint: Endpoint,
        request: Request<Incoming>,
    ) -> Response<GatewayBody> {
        let html = page::wants_html(request.headers()) || is_form(&request);
        match self.answer(endpoint, request, html).await {
            Ok(response) => response,
            Err(error) if html => {
                let privacy = &self.config.privacy;
                error.into_page(&privacy.page, &privacy.path)
            }
            Err(error) => error.into_response(self.request_id),
        }
    }

    async fn answer(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        html: bool,
    ) -> Result<Response<GatewayBody>, PrivacyError> {
        if endpoint == Endpoint::Intake && request.method() == Method::GET && html {
            return Ok(self.form_page(&Typed::default(), &[], StatusCode::OK));
        }
        if request.method() != endpoint.method() {
            return Err(PrivacyError::MethodNotAllowed(endpoint.method()));
        }
        if endpoint.for_customers()
            && self
                .caller
                .as_ref()
                .is_none_or(|c| c.kind != ClientKind::Customer)
        {
            return Err(PrivacyError::CustomersOnly);
        }
        match endpoint {
            Endpoint::Intake => self.intake(request).await,
            Endpoint::Status(id) => self.status(id.ok_or(PrivacyError::NotFound)?, html).await,
            Endpoint::Inbox => self.inbox(request.uri().query().unwrap_or("")).await,
            Endpoint::Ack(id) => self.ack(id.ok_or(PrivacyError::NotFound)?).await,
            Endpoint::Erasure => self.erasure(request).await,
        }
    }

    fn caller_id(&self) -> Arc<str> {
        self.caller
            .as_ref()
            .expect("checked: a customer")
            .id
            .clone()
    }

    /// Counts an intake request against the limit: the one shared through the store when it is
    /// shared, else this gateway's own.
    async fn admit(
        &self,
        per_minute: u32,
        now: Instant,
    ) -> Result<Result<(), Duration>, PrivacyError> {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let key = limit::shared_key(self.config.tag_key.expose(), self.ip, unix_now as u64);
        let (interval, burst) = limit::shared_budget(per_minute);
        match self.desk.outbox.admit(key, unix_now, interval, burst) {
            Some(shared) => Ok(shared
                .await
                .map_err(PrivacyError::store)?
                .map_err(|wait| Duration::from_secs_f64(wait.max(0.0)))),
            None => Ok(self.desk.limiter().check(self.ip, per_minute, now)),
        }
    }

    /// The recipient page's form, empty or marked with a refusal.
    fn form_page(
        &self,
        typed: &Typed,
        errors: &[body::BodyError],
        status: StatusCode,
    ) -> Response<GatewayBody> {
        let privacy = &self.config.privacy;
        page::html_response(
            status,
            page::form(&privacy.page, &privacy.path, typed, errors),
        )
    }

    async fn intake(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, PrivacyError> {
        let started = Instant::now();
        let per_minute = self.config.privacy.rate_limit_per_minute;
        if let Err(wait) = self.admit(per_minute, started).await? {
            return Err(PrivacyError::RateLimited {
                per_minute,
                retry_after_secs: retry_after_secs(wait),
            });
        }
        let timeout = self.config.limits.body_read_timeout;
        let form = is_form(&request);
        let intake = if form {
            let bytes = read_small(request, timeout, |media| media == FORM_MEDIA).await?;
            let typed = Typed {
                fields: form_urlencoded::parse(&bytes).into_owned().collect(),
            };
            match body::intake_form(&typed.fields) {
                Ok(intake) => intake,
                Err(errors) => {
                    return Ok(self.form_page(&typed, &errors, StatusCode::BAD_REQUEST));
                }
            }
        } else {
            body::intake(&read_small(request, timeout, is_json_media).await?)?
        };
        let filed = self.desk.file(intake).await.map_err(PrivacyError::store)?;
        let id = format_id(&filed.id);
        let controllers: Vec<&Arc<Client>> = filed
            .verified
            .iter()
            .filter_map(|id| self.config.clients.iter().find(|c| c.id == *id))
            .collect();
        let response = if form {
            let privacy = &self.config.privacy;
            let named: Vec<(&str, Option<&str>)> = controllers
                .iter()
                .map(|c| (c.name.as_str(), c.privacy_contact.as_deref()))
                .collect();
            page::html_response(
                StatusCode::ACCEPTED,
                page::received(
                    &privacy.page,
                    &id,
                    &format!("{}/{id}", privacy.path),
                    RECEIVED_MESSAGE,
                    &named,
                ),
            )
        } else {
            let mut answer = json!({
                "request_id": id,
                "status": "received",
                "message": RECEIVED_MESSAGE,
            });
            if !controllers.is_empty() {
                let named: Vec<Value> = controllers
                    .iter()
                    .map(|c| json!({ "name": c.name, "privacy_contact": c.privacy_contact }))
                    .collect();
                answer["controllers"] = Value::Array(named);
            }
            json_response(StatusCode::ACCEPTED, &answer)
        };
        tokio::time::sleep_until((started + INTAKE_FLOOR).into()).await;
        Ok(response)
    }

    async fn status(
        &self,
        id: RequestId,
        html: bool,
    ) -> Result<Response<GatewayBody>, PrivacyError> {
        let (received_at, status) = self
            .desk
            .status(id)
            .await
            .map_err(PrivacyError::store)?
            .ok_or(PrivacyError::NotFound)?;
        if html {
            return Ok(page::html_response(
                StatusCode::OK,
                page::status(
                    &self.config.privacy.page,
                    &format_id(&id),
                    status,
                    &rfc3339(received_at),
                ),
            ));
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "request_id": format_id(&id),
                "status": status.as_str(),
                "received_at": rfc3339(received_at),
            }),
        ))
    }

    async fn inbox(&self, query: &str) -> Result<Response<GatewayBody>, PrivacyError> {
        let mut status = None;
        let mut limit = INBOX_DEFAULT;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = PrivacyError::InvalidQuery;
            match name {
                "status" => {
                    status = Some(DeliveryStatus::parse(value).ok_or_else(|| {
                        bad("`status` must be one of pending, delivered, dead, acknowledged")
                    })?);
                }
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=INBOX_MAX).contains(n))
                        .ok_or_else(|| bad("`limit` must be a number from 1 to 1000"))?;
                }
                _ => return Err(bad("unknown query parameter (allowed: status, limit)")),
            }
        }
        let items = self
            .desk
            .inbox(self.caller_id(), status, limit)
            .await
            .map_err(PrivacyError::store)?;
        let requests: Vec<Value> = items.iter().map(inbox_entry).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "requests": requests }),
        ))
    }

    async fn ack(&self, id: RequestId) -> Result<Response<GatewayBody>, PrivacyError> {
        let found = self
            .desk
            .acknowledge(id, self.caller_id())
            .await
            .map_err(PrivacyError::store)?;
        if !found {
            return Err(PrivacyError::NotFound);
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({ "request_id": format_id(&id), "status": "acknowledged" }),
        ))
    }

    async fn erasure(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, PrivacyError> {
        let timeout = self.config.limits.body_read_timeout;
        let bytes = read_small(request, timeout, is_json_media).await?;
        let (email, phone) = body::erasure(&bytes)?;
        let identifiers: Vec<String> = email.into_iter().chain(phone).collect();
        let deleted = self
            .desk
            .erase(self.caller_id(), &identifiers)
            .await
            .map_err(PrivacyError::store)?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "recipients_deleted": deleted.recipients,
                "records_deleted": deleted.records,
            }),
        ))
    }
}

/// One inbox entry (reference §5).
fn inbox_entry(item: &InboxItem) -> Value {
    let subject = item.subject.clone().unwrap_or_default();
    json!({
        "request_id": format_id(&item.request_id),
        "request_type": item.kind.as_str(),
        "status": item.status.as_str(),
        "received_at": rfc3339(item.received_at),
        "verified": item.verified,
        "subject": { "email": subject.email, "phone": subject.phone },
        "tracking_number": subject.tracking_number,
        "details": subject.details,
        "reply_to": subject.reply_to,
    })
}

/// Whether `request` is the recipient page's form being posted.
fn is_form(request: &Request<Incoming>) -> bool {
    request.method() == Method::POST
        && media_type(request.headers()).is_some_and(|media| media == FORM_MEDIA)
}

/// Reads a small body of a media type `accepts` takes, at most [`MAX_BODY`] bytes, within
/// `timeout`.
async fn read_small(
    request: Request<Incoming>,
    timeout: Duration,
    accepts: fn(&str) -> bool,
) -> Result<Bytes, PrivacyError> {
    if !media_type(request.headers()).is_some_and(|media| accepts(&media)) {
        return Err(PrivacyError::UnsupportedMediaType);
    }
    let collected = tokio::time::timeout(
        timeout,
        Limited::new(request.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| PrivacyError::BodyTimeout)?;
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(PrivacyError::BodyTooLarge(MAX_BODY))
        }
        Err(_) => Err(PrivacyError::BadBody),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_recognised_by_path() {
        let id = "0123456789abcdef0123456789abcdef";
        let parsed = parse_id(id);
        let cases: &[(&str, Option<Endpoint>)] = &[
            ("/privacy/requests", Some(Endpoint::Intake)),
            (
                &format!("/privacy/requests/{id}"),
                Some(Endpoint::Status(parsed)),
            ),
            ("/privacy/requests/nope", Some(Endpoint::Status(None))),
            ("/privacy/requests/a/b", None),
            ("/privacy/requestsx", None),
            ("/v1/privacy/requests", Some(Endpoint::Inbox)),
            (
                &format!("/v1/privacy/requests/{id}/ack"),
                Some(Endpoint::Ack(parsed)),
            ),
            ("/v1/privacy/requests/x/ack", Some(Endpoint::Ack(None))),
            (&format!("/v1/privacy/requests/{id}"), None),
            ("/v1/privacy/erasures", Some(Endpoint::Erasure)),
            ("/v1/privacy/erasures/1", None),
            ("/v1/shipments", None),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::of("/privacy/requests", path), *want, "{path}");
        }
    }
}
