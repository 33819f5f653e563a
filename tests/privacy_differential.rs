//! Privacy correctness, differentially: generated shipment lists with canary personal data,
//! random callers, controllers and route purposes, through the real proxy over TLS with the
//! shipped rules. For every record: a caller who does not control it never sees its canaries,
//! and no value changes that no rule names. The controller is named by the record's
//! `customer_id`, or (the second test) learnt from a create through the gateway and found again
//! by the record's tag. Fixed seed and a bounded number of cases, so a failure reproduces;
//! `PRIVACY_CASES=1000` runs more.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{
    client::{Answer, post_json},
    config::{KEY_ACME, KEY_ANALYTICS, KEY_GLOBEX, SHIPPED_RULES},
    gateway::TestGateway,
    harness::fixed_runner,
    upstream::Canned,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Routes over the mock upstream's canned answer, one per purpose, with the shipped rules.
fn routes() -> String {
    let rules = format!(
        r#"rules = ["{SHIPPED_RULES}/recipient.toml", "{SHIPPED_RULES}/sensitive.toml", "{SHIPPED_RULES}/analytics.toml"]"#
    );
    ["fulfillment", "support", "marketing", "analytics"]
        .iter()
        .map(|purpose| {
            format!(
                r#"
[[route]]
name = "{purpose}"
path_prefix = "/canned/{purpose}"
upstream = "mock"
purpose = "{purpose}"
records = ["$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
controller_member = "customer_id"
{rules}
"#
            )
        })
        .collect()
}

/// One generated record: who controls it and what it holds.
#[derive(Debug, Clone)]
struct Shipment {
    controller: Option<&'static str>,
    named: &'static str,
    extra: Vec<(String, Value)>,
    street2: bool,
    weight: String,
}

fn shipment() -> impl Strategy<Value = Shipment> {
    (
        prop_oneof![Just("acme"), Just("globex"), Just("initech"), Just("")],
        extras(),
        any::<bool>(),
        weight(),
    )
        .prop_map(|(named, extra, street2, weight)| Shipment {
            controller: match named {
                "acme" => Some("acme"),
                "globex" => Some("globex"),
                _ => None,
            },
            named,
            extra,
            street2,
            weight,
        })
}

/// Members no rule names, of any JSON type, beside the ones the records are built from.
fn extras() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(
        (
            "[a-z]{1,8}",
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                "[a-zA-Z0-9 ._-]{0,12}".prop_map(Value::from),
                Just(Value::Null),
                Just(json!({"nested": [1, "two", {"three": 3.5}]})),
            ],
        ),
        0..4,
    )
    .prop_map(|extra| {
        extra
            .into_iter()
            .filter(|(k, _)| {
                ![
                    "id",
                    "tracking_number",
                    "customer_id",
                    "recipient",
                    "weight",
                ]
                .contains(&k.as_str())
            })
            .collect()
    })
}

/// A weight as the upstream writes it, including numbers serde_json would not keep.
fn weight() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2.5".to_string()),
        Just("1e400".to_string()),
        Just("123456789012345678901234567890".to_string()),
        (0u32..100_000).prop_map(|n| format!("{n}.{:03}", n % 1000)),
    ]
}

/// Unique ids across cases: a record tagged in one case must not carry its tag into another.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Record `n`'s personal values: name, e-mail, phone, street, street2, postal code.
fn canary_values(n: u64) -> Vec<String> {
    vec![
        format!("Canary Person {n}"),
        format!("canary{n}@example.com"),
        format!("+1 555 {:04} {:04}", n % 10_000, (n * 7) % 10_000),
        format!("{n} Canary Street"),
        format!("Flat {n} Canary House"),
        format!("PC{n:06}"),
    ]
}

/// The record's JSON text and its canaries (personal values no non-controller may see).
fn render(s: &Shipment) -> (String, Vec<String>) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let canaries = canary_values(n);
    let mut record = serde_json::Map::new();
    record.insert("id".into(), json!(format!("shp_{n}")));
    record.insert("tracking_number".into(), json!(format!("1ZDIFF{n:010}")));
    if !s.named.is_empty() {
        record.insert("customer_id".into(), json!(s.named));
    }
    let mut address = json!({"street": canaries[3], "city": "Springfield", "postal_code": canaries[5], "country": "US"});
    if s.street2 {
        address["street2"] = json!(canaries[4]);
    }
    record.insert(
        "recipient".into(),
        json!({"name": canaries[0], "email": canaries[1], "phone": canaries[2], "address": address}),
    );
    for (k, v) in &s.extra {
        record.insert(k.clone(), v.clone());
    }
    let text = serde_json::to_string(&Value::Object(record)).unwrap();
    // The weight goes in as written (serde_json would not keep 1e400).
    let text = format!("{},\"weight\":{}}}", &text[..text.len() - 1], s.weight);
    let canaries = if s.street2 {
        canaries
    } else {
        canaries
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, c)| c)
            .collect()
    };
    (text, canaries)
}

/// A record without the values the shipped rules name (the recipient's name, contact, street
/// and postal code), for comparing everything else.
fn unnamed(mut record: Value) -> Value {
    if let Some(recipient) = record.get_mut("recipient").and_then(Value::as_object_mut) {
        for key in ["name", "email", "phone"] {
            recipient.remove(key);
        }
        if let Some(address) = recipient.get_mut("address").and_then(Value::as_object_mut) {
            for key in ["street", "street2", "postal_code"] {
                address.remove(key);
            }
        }
    }
    record
}

#[test]
fn no_canary_reaches_a_non_controller_and_nothing_unnamed_changes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gw = runtime.block_on(TestGateway::start(&routes()));
    let (mut runner, cases) = fixed_runner("PRIVACY_CASES", 64);
    let strategy = (
        prop::collection::vec(shipment(), 1..6),
        prop_oneof![Just("acme"), Just("globex"), Just("analytics")],
        prop_oneof![
            Just("fulfillment"),
            Just("support"),
            Just("marketing"),
            Just("analytics")
        ],
    );
    let checked = AtomicU64::new(0);
    let result = runner.run(&strategy, |(shipments, caller, purpose)| {
        let rendered: Vec<(String, Vec<String>)> = shipments.iter().map(render).collect();
        let body = format!(
            "{{\"shipments\":[{}]}}",
            rendered
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        gw.upstream
            .set_canned(Canned::json(body.clone().into_bytes()));
        let key = match caller {
            "acme" => KEY_ACME,
            "globex" => KEY_GLOBEX,
            _ => KEY_ANALYTICS,
        };
        let answer = runtime.block_on(async {
            gw.h1()
                .await
                .get(&format!("/canned/{purpose}"), Some(key))
                .await
        });
        prop_assert_eq!(answer.status.as_u16(), 200);
        let text = String::from_utf8(answer.body.to_vec()).unwrap();
        // 1e400 is beyond serde_json: values are compared with it replaced on both sides (the
        // controller's check below compares the raw bytes).
        let output: Value = serde_json::from_str(&text.replace("1e400", "0")).unwrap();
        let out_records = output["shipments"].as_array().unwrap();
        prop_assert_eq!(out_records.len(), shipments.len());
        for (i, (shipment, (record_text, canaries))) in shipments.iter().zip(&rendered).enumerate()
        {
            let is_controller = shipment.controller == Some(caller) && purpose != "analytics";
            let out_text = out_records[i].to_string();
            if is_controller {
                // Its own recipient, whole: every byte of the record as the upstream sent it.
                prop_assert!(
                    text.contains(record_text.as_str()),
                    "the controller's record changed: {} -> {}",
                    record_text,
                    out_text
                );
            } else {
                for canary in canaries {
                    prop_assert!(
                        !out_text.contains(canary.as_str()),
                        "{} reached {} ({}) in {}",
                        canary,
                        caller,
                        purpose,
                        out_text
                    );
                }
            }
            let expected =
                unnamed(serde_json::from_str::<Value>(&record_text.replace("1e400", "0")).unwrap());
            let got = unnamed(out_records[i].clone());
            prop_assert_eq!(got, expected, "a value no rule names changed");
        }
        checked.fetch_add(shipments.len() as u64, Ordering::Relaxed);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!(
        "privacy differential: {cases} cases, {} records checked",
        checked.load(Ordering::Relaxed)
    );
}

// Controllers learned from tags: records created through the gateway by one customer, then read
// by any caller on routes where nothing else names the controller.

/// The four purposes the shipped rules know.
fn purpose() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("fulfillment"),
        Just("support"),
        Just("marketing"),
        Just("analytics")
    ]
}

/// Routes over the mock upstream's canned answer, per purpose: `tagged` has no controller member
/// (only a tag names a record's controller), `member` takes `customer_id` (which a tag must still
/// win over). `$` is a record too: a create's request and response and a single-record read.
fn tag_routes() -> String {
    let rules = format!(
        r#"rules = ["{SHIPPED_RULES}/recipient.toml", "{SHIPPED_RULES}/sensitive.toml", "{SHIPPED_RULES}/analytics.toml"]"#
    );
    let mut routes = String::new();
    for purpose in ["fulfillment", "support", "marketing", "analytics"] {
        for (kind, member) in [
            ("tagged", ""),
            ("member", "controller_member = \"customer_id\"\n"),
        ] {
            routes += &format!(
                r#"
[[route]]
name = "{kind}-{purpose}"
path_prefix = "/canned/{kind}/{purpose}"
upstream = "mock"
purpose = "{purpose}"
records = ["$", "$.shipments[*]"]
record_keys = ["id", "tracking_number"]
recipient = "recipient"
recipient_identifiers = ["email", "phone"]
{member}{rules}
"#
            );
        }
    }
    routes
}

/// Which of [`tag_routes`] a request goes to.
#[derive(Debug, Clone, Copy)]
struct Via {
    member: bool,
    purpose: &'static str,
}

impl Via {
    fn path(&self, rest: &str) -> String {
        let kind = if self.member { "member" } else { "tagged" };
        format!("/canned/{kind}/{}/shipments{rest}", self.purpose)
    }
}

fn via() -> impl Strategy<Value = Via> {
    (any::<bool>(), purpose()).prop_map(|(member, purpose)| Via { member, purpose })
}

/// One record of the tag test: who creates it through the gateway, and how the upstream lists it
/// afterwards (never with a `customer_id` naming its creator: only the tag can).
#[derive(Debug, Clone)]
struct Tracked {
    /// The customer whose create the upstream answers with this record; `None`: never created
    /// through the gateway.
    creator: Option<&'static str>,
    create_via: Via,
    /// 201 or 200.
    create_status: u16,
    /// Whether the create request already carries the tracking number.
    tracking_in_request: bool,
    /// Whether the other customer's create is then answered with this same record (an idempotent
    /// create, or an attempt to claim it): the record must stay its creator's.
    claimed: bool,
    /// The listed record's `customer_id` (`""`: none). On a `member` route it names the
    /// controller of a record no tag names, and nothing else.
    listed_customer: &'static str,
    /// Which record keys the listed record carries: (id, tracking number).
    listed_keys: (bool, bool),
    extra: Vec<(String, Value)>,
    street2: bool,
    weight: String,
}

fn tracked(creator: BoxedStrategy<Option<&'static str>>) -> impl Strategy<Value = Tracked> {
    (
        (
            creator,
            via(),
            prop_oneof![Just(201u16), Just(200u16)],
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop_oneof![
                Just(""),
                Just("acme"),
                Just("globex"),
                Just("initech"),
                Just("analytics")
            ],
            prop_oneof![Just((true, true)), Just((true, false)), Just((false, true))],
            extras(),
            any::<bool>(),
            weight(),
        ),
    )
        .prop_map(
            |(
                (creator, create_via, create_status, tracking_in_request, claimed),
                (listed_customer, listed_keys, extra, street2, weight),
            )| Tracked {
                creator,
                create_via,
                create_status,
                tracking_in_request,
                claimed,
                listed_customer,
                listed_keys,
                extra,
                street2,
                weight,
            },
        )
}

/// A read of the list (`single: None`) or of one record, by `caller`.
#[derive(Debug, Clone)]
struct Read {
    caller: &'static str,
    via: Via,
    single: Option<prop::sample::Index>,
}

fn read() -> impl Strategy<Value = Read> {
    (
        prop_oneof![Just("acme"), Just("globex"), Just("analytics")],
        via(),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(caller, via, single)| Read {
            caller,
            via,
            single,
        })
}

/// A tracked record's texts.
struct TrackedText {
    id: String,
    canaries: Vec<String>,
    /// As the upstream answers the create: both record keys, no `customer_id`.
    stored: String,
    /// As the upstream lists it later.
    listed: String,
    /// The creator's create request.
    request: Value,
}

fn render_tracked(t: &Tracked) -> TrackedText {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let values = canary_values(n);
    let (id, tracking) = (format!("shp_t{n}"), format!("1ZTAG{n:011}"));
    let mut address = json!({"street": values[3], "city": "Springfield", "postal_code": values[5], "country": "US"});
    if t.street2 {
        address["street2"] = json!(values[4]);
    }
    let recipient =
        json!({"name": values[0], "email": values[1], "phone": values[2], "address": address});
    let text = |id: Option<&str>, tracking: Option<&str>, customer: &str| {
        let mut record = serde_json::Map::new();
        if let Some(id) = id {
            record.insert("id".into(), json!(id));
        }
        if let Some(tracking) = tracking {
            record.insert("tracking_number".into(), json!(tracking));
        }
        if !customer.is_empty() {
            record.insert("customer_id".into(), json!(customer));
        }
        record.insert("recipient".into(), recipient.clone());
        for (k, v) in &t.extra {
            record.insert(k.clone(), v.clone());
        }
        let text = serde_json::to_string(&Value::Object(record)).unwrap();
        format!("{},\"weight\":{}}}", &text[..text.len() - 1], t.weight)
    };
    let stored = text(Some(&id), Some(&tracking), "");
    let listed = text(
        t.listed_keys.0.then_some(id.as_str()),
        t.listed_keys.1.then_some(tracking.as_str()),
        t.listed_customer,
    );
    let mut request = json!({ "recipient": recipient });
    if t.tracking_in_request {
        request["tracking_number"] = json!(tracking);
    }
    let canaries = values
        .into_iter()
        .enumerate()
        .filter(|(i, _)| t.street2 || *i != 4)
        .map(|(_, c)| c)
        .collect();
    TrackedText {
        id,
        canaries,
        stored,
        listed,
        request,
    }
}

fn api_key(caller: &str) -> &'static str {
    match caller {
        "acme" => KEY_ACME,
        "globex" => KEY_GLOBEX,
        _ => KEY_ANALYTICS,
    }
}

/// A response's text and its JSON (1e400, beyond serde_json, read as 0 as in [`check`]).
fn parsed(answer: &Answer) -> (String, Value) {
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    let value =
        serde_json::from_str(&text.replace("1e400", "0")).unwrap_or_else(|e| panic!("{e}: {text}"));
    (text, value)
}

/// One record as a caller got it (`got`, within the response text `body`) against what the
/// upstream sent: its controller gets every byte unchanged, anyone else none of its canaries, and
/// no value that no rule names changes either way.
fn check(
    body: &str,
    got: &Value,
    sent: &str,
    canaries: &[String],
    whole: bool,
    context: &str,
) -> Result<(), TestCaseError> {
    if whole {
        prop_assert!(
            body.contains(sent),
            "{}: the controller's record changed: {} -> {}",
            context,
            sent,
            got
        );
    } else {
        let got_text = got.to_string();
        for canary in canaries {
            prop_assert!(
                !got_text.contains(canary.as_str()),
                "{}: {} reached a non-controller in {}",
                context,
                canary,
                got_text
            );
        }
    }
    let expected = unnamed(serde_json::from_str::<Value>(&sent.replace("1e400", "0")).unwrap());
    prop_assert_eq!(
        unnamed(got.clone()),
        expected,
        "{}: a value no rule names changed",
        context
    );
    Ok(())
}

/// How the model knows a record's controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Learned {
    /// From the create's response (record tag ▸ … ▸ caller), tagged since.
    Created,
    /// From `customer_id` on a `member` route, tagged since.
    Member,
}

#[test]
fn controllers_learned_from_creates_see_their_canaries_and_no_one_else_does() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gw = runtime.block_on(TestGateway::start(&tag_routes()));
    let (mut runner, cases) = fixed_runner("PRIVACY_CASES", 64);
    let customer = || prop_oneof![Just(Some("acme")), Just(Some("globex"))];
    // At least one record of every case is created (a POST answered 201), somewhere in the list.
    let strategy = (
        tracked(customer().boxed()),
        prop::collection::vec(tracked(prop_oneof![customer(), Just(None)].boxed()), 0..5),
        any::<prop::sample::Index>(),
        prop::collection::vec(read(), 1..4),
    );
    let (checked, own_by_tag, denied_by_tag, tag_over_member) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let result = runner.run(&strategy, |(mut first, mut records, at, reads)| {
        // The one created for sure is answered 201: only that makes a create.
        first.create_status = 201;
        records.insert(at.index(records.len() + 1), first);
        let texts: Vec<TrackedText> = records.iter().map(render_tracked).collect();
        // What the gateway should hold: the controller of each record and how it learned it.
        let mut owner: Vec<Option<(&'static str, Learned)>> = vec![None; records.len()];
        runtime.block_on(async {
            let mut client = gw.h1().await;

            // Creates, then the other customer's claim. The tag reaches the store behind the
            // request path, but this gateway's cache has it from the moment the create is
            // answered, and every read below goes through this gateway: no waiting.
            for (i, (t, text)) in records.iter().zip(&texts).enumerate() {
                let Some(creator) = t.creator else { continue };
                let mut attempts = vec![(creator, text.request.clone())];
                if t.claimed {
                    let other = if creator == "acme" { "globex" } else { "acme" };
                    let email = format!("claim.{}@example.org", text.id);
                    let claim = json!({"recipient": {"name": "Claimant", "email": email}});
                    attempts.push((other, claim));
                }
                for (customer, request) in attempts {
                    gw.upstream.set_canned(
                        Canned::json(text.stored.clone().into_bytes()).status(t.create_status),
                    );
                    let answer = post_json(
                        &mut client,
                        &t.create_via.path(""),
                        Some(api_key(customer)),
                        &request,
                    )
                    .await;
                    prop_assert_eq!(answer.status.as_u16(), t.create_status);
                    if t.create_via.purpose != "analytics" {
                        // The caller's own data reaches the processor as sent.
                        prop_assert_eq!(
                            &gw.upstream.last()["body"],
                            &Value::from(request.to_string())
                        );
                    }
                    // A create is a POST answered 201: the first one wins and the claim
                    // changes nothing. A 200 creates nothing the gateway trusts, so the record
                    // stays without a controller.
                    let controller = if t.create_status == 201 {
                        Some(owner[i].get_or_insert((creator, Learned::Created)).0)
                    } else {
                        owner[i].map(|(c, _)| c)
                    };
                    let (body, got) = parsed(&answer);
                    check(
                        &body,
                        &got,
                        &text.stored,
                        &text.canaries,
                        controller == Some(customer) && t.create_via.purpose != "analytics",
                        &format!("create by {customer} via {:?}", t.create_via),
                    )?;
                }
            }

            // The generated reads, then the list as each customer on a route where only tags
            // name controllers: every case shows a creator its own record whole and the other
            // customer nothing of it.
            let finals = ["acme", "globex"].map(|caller| Read {
                caller,
                via: Via {
                    member: false,
                    purpose: "fulfillment",
                },
                single: None,
            });
            for read in reads.iter().chain(&finals) {
                let shown: Vec<usize> = match &read.single {
                    Some(index) => vec![index.index(records.len())],
                    None => (0..records.len()).collect(),
                };
                let (upstream_body, path) = match &read.single {
                    Some(_) => (
                        texts[shown[0]].listed.clone(),
                        read.via.path(&format!("/{}", texts[shown[0]].id)),
                    ),
                    None => (
                        format!(
                            "{{\"shipments\":[{}]}}",
                            shown
                                .iter()
                                .map(|&i| texts[i].listed.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                        read.via.path(""),
                    ),
                };
                gw.upstream
                    .set_canned(Canned::json(upstream_body.into_bytes()));
                let answer = client.get(&path, Some(api_key(read.caller))).await;
                prop_assert_eq!(answer.status.as_u16(), 200);
                let (body, output) = parsed(&answer);
                let got: Vec<&Value> = match &read.single {
                    Some(_) => vec![&output],
                    None => output["shipments"].as_array().unwrap().iter().collect(),
                };
                prop_assert_eq!(got.len(), shown.len());
                for (&i, got) in shown.iter().zip(got) {
                    // Record tag ▸ controller member ▸ unknown (a read never makes the caller
                    // the controller).
                    let member = Some(records[i].listed_customer)
                        .filter(|c| read.via.member && ["acme", "globex"].contains(c));
                    let controller = owner[i].or(member.map(|c| (c, Learned::Member)));
                    let whole = controller.is_some_and(|(c, _)| c == read.caller)
                        && read.via.purpose != "analytics";
                    check(
                        &body,
                        got,
                        &texts[i].listed,
                        &texts[i].canaries,
                        whole,
                        &format!(
                            "read by {} via {:?} of a record controlled by {:?}",
                            read.caller, read.via, controller
                        ),
                    )?;
                    if let Some((c, Learned::Created)) = controller {
                        if whole && !read.via.member {
                            own_by_tag.fetch_add(1, Ordering::Relaxed);
                        }
                        if c != read.caller && read.caller != "analytics" {
                            denied_by_tag.fetch_add(1, Ordering::Relaxed);
                        }
                        if member.is_some_and(|m| m != c) {
                            tag_over_member.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // The answer tagged what it resolved.
                    owner[i] = controller;
                }
                checked.fetch_add(shown.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let own = own_by_tag.load(Ordering::Relaxed);
    let denied = denied_by_tag.load(Ordering::Relaxed);
    // Every case's final reads show each creator its record whole through the tag alone.
    assert!(own >= u64::from(cases) && denied >= u64::from(cases));
    eprintln!(
        "privacy differential by tags: {cases} cases, {} records checked; by tag alone {own} \
         whole to their creator, {denied} kept from the other customer; {} tags over a \
         customer_id naming another customer",
        checked.load(Ordering::Relaxed),
        tag_over_member.load(Ordering::Relaxed)
    );
}
