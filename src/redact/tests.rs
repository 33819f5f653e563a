//! The engine as tables of cases: every action, every `when` combination, scopes and precedence.

use super::Action;
use super::*;

fn rule(id: &str, path: &str, action: Action) -> Rule {
    Rule {
        mask: (2, 1),
        ..Rule::new(id, path, action).unwrap()
    }
}

fn keys() -> HashKeys {
    HashKeys::derive(b"test-tag-key-0123", ["acme", "globex"])
}

fn plan(rules: Vec<Rule>, purpose: Purpose) -> Plan {
    let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
    Plan::new(
        &[
            Path::compile("$").unwrap(),
            Path::compile("$.items[*]").unwrap(),
        ],
        Some("recipient"),
        &rules,
        purpose,
    )
}

/// Applies `plan` with every record controlled by `controller` and the caller in `relation`.
fn run(
    plan: &Plan,
    body: &str,
    direction: Direction,
    relation: Relation,
    controller: Option<&str>,
) -> String {
    let doc = Document::parse(body.as_bytes()).unwrap();
    let records: Vec<Record> = plan
        .find_records(&doc)
        .unwrap()
        .into_iter()
        .map(|node| Record {
            node,
            relation,
            controller,
        })
        .collect();
    let applied = plan.apply(&doc, direction, &records, relation, &keys());
    String::from_utf8(render_if_changed(&doc, &applied).unwrap_or_else(|| doc.source().to_vec()))
        .unwrap()
}

/// Applies `plan` to `body` with the records (document order) in the given relations.
fn run_relations<'p>(plan: &'p Plan, body: &str, relations: &[Relation]) -> (String, Applied<'p>) {
    let doc = Document::parse(body.as_bytes()).unwrap();
    let found = plan.find_records(&doc).unwrap();
    assert_eq!(found.len(), relations.len(), "records of {body}");
    let records: Vec<Record> = found
        .iter()
        .zip(relations)
        .map(|(&node, &relation)| Record {
            node,
            relation,
            controller: None,
        })
        .collect();
    let applied = plan.apply(
        &doc,
        Direction::Response,
        &records,
        Relation::NotController,
        &keys(),
    );
    (
        String::from_utf8(doc.render(&applied.edits)).unwrap(),
        applied,
    )
}

#[test]
fn every_action_on_every_kind_of_value() {
    let hash_acme = keys().pseudonym("acme", b"jane@x.com").unwrap();
    let hash_number = keys().pseudonym("acme", b"12.50").unwrap();
    let cases: Vec<(Action, &str, Option<&str>, String)> = vec![
        (
            Action::Redact,
            r#""jane@x.com""#,
            Some("acme"),
            r#""[REDACTED]""#.into(),
        ),
        (
            Action::Redact,
            r#"{"a":1}"#,
            Some("acme"),
            r#""[REDACTED]""#.into(),
        ),
        (
            Action::Redact,
            "null",
            Some("acme"),
            r#""[REDACTED]""#.into(),
        ),
        (
            Action::Mask,
            r#""jane@x.com""#,
            Some("acme"),
            r#""ja*******m""#.into(),
        ),
        (Action::Mask, r#""é\"x""#, Some("acme"), r#""***""#.into()),
        (
            Action::Mask,
            "12.50",
            Some("acme"),
            r#""[REDACTED]""#.into(),
        ),
        (
            Action::Hash,
            r#""jane@x.com""#,
            Some("acme"),
            format!("\"{hash_acme}\""),
        ),
        (
            Action::Hash,
            r#""jane@x.com""#,
            None,
            r#""[REDACTED]""#.into(),
        ),
        (
            Action::Hash,
            r#""jane@x.com""#,
            Some("not-a-client"),
            r#""[REDACTED]""#.into(),
        ),
        (
            Action::Hash,
            "12.50",
            Some("acme"),
            format!("\"{hash_number}\""),
        ),
    ];
    for (action, value, controller, expected) in cases {
        let plan = plan(vec![rule("r", "$.v", action)], Purpose::Fulfillment);
        let body = format!(r#"{{"id":1,"v":{value},"n":1e400}}"#);
        let out = run(
            &plan,
            &body,
            Direction::Response,
            Relation::NotController,
            controller,
        );
        assert_eq!(
            out,
            format!(r#"{{"id":1,"v":{expected},"n":1e400}}"#),
            "{action:?} {value} {controller:?}"
        );
    }
    // Remove deletes the member, or the element of an array.
    let plan_remove = plan(vec![rule("r", "$.v", Action::Remove)], Purpose::Fulfillment);
    let out = run(
        &plan_remove,
        r#"{"v":1,"w":2}"#,
        Direction::Request,
        Relation::Controller,
        None,
    );
    assert_eq!(out, r#"{"w":2}"#);
    let plan_remove = plan(
        vec![rule("r", "$.v[1]", Action::Remove)],
        Purpose::Fulfillment,
    );
    let out = run(
        &plan_remove,
        r#"{"v":[1,2,3]}"#,
        Direction::Request,
        Relation::Controller,
        None,
    );
    assert_eq!(out, r#"{"v":[1,3]}"#);
}

#[test]
fn when_filters_every_combination() {
    let directions = [
        (DirectionFilter::Request, vec![Direction::Request]),
        (DirectionFilter::Response, vec![Direction::Response]),
        (
            DirectionFilter::Both,
            vec![Direction::Request, Direction::Response],
        ),
    ];
    let callers = [
        (
            CallerFilter::Any,
            vec![Relation::Controller, Relation::NotController],
        ),
        (CallerFilter::Controller, vec![Relation::Controller]),
        (CallerFilter::NotController, vec![Relation::NotController]),
    ];
    let purposes = [
        (None, Purpose::ALL.to_vec()),
        (Some(vec![Purpose::Analytics]), vec![Purpose::Analytics]),
        (
            Some(vec![Purpose::Support, Purpose::Marketing]),
            vec![Purpose::Support, Purpose::Marketing],
        ),
    ];
    let mut checked = 0;
    for (direction_filter, admitted_directions) in &directions {
        for (caller_filter, admitted_relations) in &callers {
            for (purpose_filter, admitted_purposes) in &purposes {
                let mut r = rule("r", "$.recipient.email", Action::Redact);
                r.direction = *direction_filter;
                r.caller = *caller_filter;
                r.purposes = purpose_filter.clone().unwrap_or(Purpose::ALL.to_vec());
                for route_purpose in Purpose::ALL {
                    let plan = plan(vec![r.clone()], route_purpose);
                    for direction in [Direction::Request, Direction::Response] {
                        for relation in [Relation::Controller, Relation::NotController] {
                            let out = run(
                                &plan,
                                r#"{"recipient":{"email":"j@x.com"}}"#,
                                direction,
                                relation,
                                Some("acme"),
                            );
                            let expected = admitted_directions.contains(&direction)
                                && admitted_relations.contains(&relation)
                                && admitted_purposes.contains(&route_purpose);
                            assert_eq!(
                                out.contains("[REDACTED]"),
                                expected,
                                "{direction_filter:?} {caller_filter:?} {purpose_filter:?} / {route_purpose:?} {direction:?} {relation:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 3 * 4 * 2 * 2);
}

#[test]
fn each_record_gets_its_own_relation_and_nested_records_are_fenced() {
    let mut r = rule("contact", "$..email", Action::Redact);
    r.caller = CallerFilter::NotController;
    let plan = plan(vec![r], Purpose::Fulfillment);
    let body = r#"{"items":[{"recipient":{"email":"a@x"}},{"recipient":{"email":"b@x"}}],"email":"top@x"}"#;
    // Records: the body, then two items. The wrapper and the second item belong to others; the
    // first item is the caller's.
    let relations = [
        Relation::NotController,
        Relation::Controller,
        Relation::NotController,
    ];
    let (out, applied) = run_relations(&plan, body, &relations);
    // The wrapper's `$..email` does not reach into the items: each item follows its own relation.
    assert_eq!(
        out,
        r#"{"items":[{"recipient":{"email":"a@x"}},{"recipient":{"email":"[REDACTED]"}}],"email":"[REDACTED]"}"#
    );
    assert_eq!(applied.changes.len(), 2);
    assert!(
        applied
            .changes
            .iter()
            .all(|c| c.rule.id == "contact" && c.action == Action::Redact)
    );
}

#[test]
fn body_scoped_rules_use_the_enclosing_records_relation() {
    let mut r = rule("body", "$..phone", Action::Redact);
    r.scope = RuleScope::Body;
    r.caller = CallerFilter::NotController;
    let plan = plan(vec![r], Purpose::Fulfillment);
    let body = r#"{"items":[{"phone":"1"},{"phone":"2"}],"meta":{"phone":"3"}}"#;
    let relations = [
        Relation::Controller,
        Relation::Controller,
        Relation::NotController,
    ];
    let (out, _) = run_relations(&plan, body, &relations);
    // Item 1 and the wrapper (record `$`) are the caller's; item 2 is not.
    assert_eq!(
        out,
        r#"{"items":[{"phone":"1"},{"phone":"[REDACTED]"}],"meta":{"phone":"3"}}"#
    );
}

#[test]
fn strongest_action_wins_and_ancestors_cover_descendants() {
    let plan_same_node = plan(
        vec![
            rule("mask", "$.recipient.email", Action::Mask),
            rule("remove", "$.recipient.email", Action::Remove),
            rule("hash", "$.recipient.email", Action::Hash),
        ],
        Purpose::Fulfillment,
    );
    let out = run(
        &plan_same_node,
        r#"{"recipient":{"email":"j@x","name":"J"}}"#,
        Direction::Response,
        Relation::Controller,
        Some("acme"),
    );
    assert_eq!(out, r#"{"recipient":{"name":"J"}}"#);

    let plan_nested = plan(
        vec![
            rule("inner", "$.recipient.email", Action::Hash),
            rule("outer", "$.recipient", Action::Redact),
        ],
        Purpose::Fulfillment,
    );
    let doc = Document::parse(br#"{"recipient":{"email":"j@x"}}"#).unwrap();
    let records = vec![Record {
        node: 0,
        relation: Relation::Controller,
        controller: Some("acme"),
    }];
    let applied = plan_nested.apply(
        &doc,
        Direction::Response,
        &records,
        Relation::NotController,
        &keys(),
    );
    assert_eq!(
        doc.render(&applied.edits),
        br#"{"recipient":"[REDACTED]"}"#.to_vec()
    );
    assert_eq!(applied.changes.len(), 1);
    assert_eq!(applied.changes[0].rule.id, "outer");
}

#[test]
fn nothing_changed_means_no_rendering() {
    let plan = plan(
        vec![rule("r", "$.recipient.email", Action::Redact)],
        Purpose::Fulfillment,
    );
    let body = br#"{ "id": 12345678901234567890.12345, "recipient": {"name": "x"} }"#;
    let doc = Document::parse(body).unwrap();
    let records = vec![Record {
        node: 0,
        relation: Relation::NotController,
        controller: None,
    }];
    let applied = plan.apply(
        &doc,
        Direction::Response,
        &records,
        Relation::NotController,
        &keys(),
    );
    assert!(render_if_changed(&doc, &applied).is_none());
}

#[test]
fn shape_checks() {
    let plan = plan(vec![], Purpose::Fulfillment);
    let cases: &[(&str, Result<usize, ShapeError>)] = &[
        (r#"{"items":[{"recipient":{}}]}"#, Ok(2)),
        (r#"{"items":[{"recipient":null}]}"#, Ok(2)),
        (r#"{"items":[1]}"#, Err(ShapeError::RecordNotObject)),
        (r#"[{"a":1}]"#, Err(ShapeError::RecordNotObject)),
        (
            r#"{"items":[{"nested":{"recipient":{}}}]}"#,
            Err(ShapeError::StrayRecipient),
        ),
        (
            r#"{"items":[{"recipient":"Jane Doe"}]}"#,
            Err(ShapeError::StrayRecipient),
        ),
        (
            r#"{"items":[{"\u0072ecipient":"Jane"}]}"#,
            Err(ShapeError::StrayRecipient),
        ),
        (
            r#"{"data":{"recipient":{}}}"#,
            Err(ShapeError::StrayRecipient),
        ),
    ];
    for (body, expected) in cases {
        let doc = Document::parse(body.as_bytes()).unwrap();
        assert_eq!(
            plan.find_records(&doc).map(|r| r.len()),
            *expected,
            "{body}"
        );
    }
}
