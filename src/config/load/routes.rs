//! Routes: each `[[route]]` validated on its own (its prefix, upstream, header lists, record
//! settings, rules and media types), its rules compiled into one plan, then all of them ordered
//! by longest prefix.

use std::collections::HashSet;
use std::sync::Arc;

use super::rules::RuleFiles;
use super::{Loader, is_prefix_path, is_token};
use crate::config::schema::{self, ForwardHeaders};
use crate::config::{ConfigError, GATEWAY_HEADERS, Privacy, ROUTING_OVERRIDES, Route, Upstream};
use crate::redact::RuleScope;
use crate::redact::path::Path as JsonPath;
use crate::target;

impl Loader<'_> {
    pub(super) fn routes(
        &self,
        files: &[schema::RouteFile],
        upstreams: &[Arc<Upstream>],
        privacy: &Privacy,
        default_forwarding: ForwardHeaders,
    ) -> Result<Vec<Arc<Route>>, ConfigError> {
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        let mut rule_files = RuleFiles::default();
        let mut routes = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let key = format!("route[{i}].name");
            self.unique_identifier(&mut names, &key, &file.name, "a name", "route")?;
            let prefix = self.prefix(i, file, privacy, &mut prefixes)?;
            let route = self.route(
                i,
                file,
                prefix,
                upstreams,
                default_forwarding,
                &mut rule_files,
            )?;
            routes.push(route);
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        Ok(routes
            .into_iter()
            .enumerate()
            .map(|(index, route)| Arc::new(Route { index, ..route }))
            .collect())
    }

    /// Route `i` whose prefix is `prefix` (already checked).
    fn route(
        &self,
        i: usize,
        file: &schema::RouteFile,
        prefix: String,
        upstreams: &[Arc<Upstream>],
        default_forwarding: ForwardHeaders,
        rule_files: &mut RuleFiles,
    ) -> Result<Route, ConfigError> {
        let key = |k: &str| format!("route[{i}].{k}");
        // Checked in a fixed order (upstream, headers, records, rules, media types), so a config
        // with several mistakes gets the same first error from one release to the next.
        let upstream_index = self.upstream_index(i, file, upstreams)?;
        let allowed_overrides = self.override_headers(i, file)?;
        let allowed_headers = self.allowed_headers(i, file)?;
        let records = self.records(i, file)?;
        let rules = rule_files.rules_of(self, i, &file.rules)?;
        let record_rule = rules.iter().find(|r| r.scope == RuleScope::Record);
        if let (true, Some(rule)) = (records.is_empty(), record_rule) {
            return Err(self.err(
                &key("rules"),
                format!(
                    "rule `{}` is relative to records but the route has no `records`; add `records` or give the rule `scope = \"body\"`",
                    rule.id
                ),
            ));
        }
        let passthrough_content_types = self.passthrough_types(i, file)?;
        if file.allow_upgrade && (!records.is_empty() || !rules.is_empty()) {
            return Err(self.err(
                &key("allow_upgrade"),
                "a route with `records` or `rules` inspects its bodies; a tunnel's bytes could not be inspected",
            ));
        }
        let plan =
            crate::redact::Plan::new(&records, file.recipient.as_deref(), &rules, file.purpose);
        Ok(Route {
            name: file.name.clone(),
            index: 0,
            upstream_index,
            folded_prefix: target::fold(&prefix),
            path_prefix: prefix,
            path_parameters: file.path_parameters,
            allowed_overrides,
            forward_headers: file.forward_headers.unwrap_or(default_forwarding),
            allowed_headers,
            allow_upgrade: file.allow_upgrade,
            fold_case: upstreams[upstream_index].fold_case,
            upstream: file.upstream.clone(),
            auth: file.auth,
            purpose: file.purpose,
            records,
            record_keys: file.record_keys.clone(),
            recipient: file.recipient.clone(),
            recipient_identifiers: file.recipient_identifiers.clone(),
            controller_member: file.controller_member.clone(),
            unknown_controller: file.unknown_controller,
            plan,
            rules,
            passthrough_content_types,
        })
    }

    /// The route's prefix without a trailing `/`: canonical, and used by no other route and not
    /// by the privacy intake.
    fn prefix(
        &self,
        i: usize,
        file: &schema::RouteFile,
        privacy: &Privacy,
        taken: &mut HashSet<String>,
    ) -> Result<String, ConfigError> {
        let key = format!("route[{i}].path_prefix");
        if !is_prefix_path(&file.path_prefix) {
            return Err(self.err(
                &key,
                "must be a canonical absolute path of letters, digits, `-._~` and `/` (no \
                 query, escapes, empty, `.` or `..` segments)",
            ));
        }
        let prefix = if file.path_prefix == "/" {
            "/".to_string()
        } else {
            file.path_prefix.trim_end_matches('/').to_string()
        };
        if !taken.insert(prefix.clone()) {
            return Err(self.err(&key, format!("prefix `{prefix}` is used by another route")));
        }
        if prefix == privacy.path {
            return Err(self.err(
                &key,
                format!("prefix `{prefix}` is the privacy intake path (`privacy.path`)"),
            ));
        }
        Ok(prefix)
    }

    /// The index of the upstream the route names, or an error listing the defined ones.
    fn upstream_index(
        &self,
        i: usize,
        file: &schema::RouteFile,
        upstreams: &[Arc<Upstream>],
    ) -> Result<usize, ConfigError> {
        upstreams
            .iter()
            .position(|u| u.name == file.upstream)
            .ok_or_else(|| {
                let known: Vec<_> = upstreams.iter().map(|u| u.name.as_str()).collect();
                let known = match known.is_empty() {
                    true => "none".to_string(),
                    false => known.join(", "),
                };
                self.err(
                    &format!("route[{i}].upstream"),
                    format!("unknown upstream `{}` (defined: {known})", file.upstream),
                )
            })
    }

    /// `allow_override_headers`: known routing overrides only.
    fn override_headers(
        &self,
        i: usize,
        file: &schema::RouteFile,
    ) -> Result<Vec<http::HeaderName>, ConfigError> {
        let mut allowed = Vec::new();
        for (j, name) in file.allow_override_headers.iter().enumerate() {
            let name = name.to_ascii_lowercase();
            match ROUTING_OVERRIDES.iter().find(|known| **known == name) {
                Some(known) => allowed.push(http::HeaderName::from_static(known)),
                None => {
                    return Err(self.err(
                        &format!("route[{i}].allow_override_headers[{j}]"),
                        format!(
                            "`{name}` is not a routing-override header (known: {})",
                            ROUTING_OVERRIDES.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(allowed)
    }

    /// `allow_headers`: header names, none of them a routing override (those are checked by
    /// value, in `allow_override_headers`) or one the gateway sets, removes or reads itself.
    fn allowed_headers(
        &self,
        i: usize,
        file: &schema::RouteFile,
    ) -> Result<Vec<http::HeaderName>, ConfigError> {
        let mut allowed = Vec::new();
        for (j, name) in file.allow_headers.iter().enumerate() {
            let key = format!("route[{i}].allow_headers[{j}]");
            let canonical =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let Some(header) = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .ok()
                .filter(|_| canonical)
            else {
                return Err(self.err(
                    &key,
                    format!("`{name}` is not a header name of letters, digits and `-`"),
                ));
            };
            if ROUTING_OVERRIDES.contains(&header.as_str()) {
                return Err(self.err(
                    &key,
                    format!("`{name}` is a routing override: list it in `allow_override_headers`, which checks its value"),
                ));
            }
            if GATEWAY_HEADERS.contains(&header.as_str())
                || header.as_str().starts_with("x-gateway-")
            {
                return Err(self.err(
                    &key,
                    format!("`{name}` is set, removed or read by the gateway itself (credentials, framing, hop-by-hop and forwarding headers)"),
                ));
            }
            allowed.push(header);
        }
        Ok(allowed)
    }

    /// The `records` selectors, compiled, and the record settings that need them.
    fn records(&self, i: usize, file: &schema::RouteFile) -> Result<Vec<JsonPath>, ConfigError> {
        let key = |k: &str| format!("route[{i}].{k}");
        let records = file
            .records
            .iter()
            .enumerate()
            .map(|(j, p)| {
                JsonPath::compile(p).map_err(|e| self.err(&format!("route[{i}].records[{j}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (k, name) in [
            ("recipient", &file.recipient),
            ("controller_member", &file.controller_member),
        ] {
            if name.as_deref() == Some("") {
                return Err(self.err(&key(k), "must not be empty"));
            }
        }
        if !file.recipient_identifiers.is_empty() && file.recipient.is_none() {
            return Err(self.err(
                &key("recipient_identifiers"),
                "needs `recipient` (the member holding the recipient object)",
            ));
        }
        if records.is_empty()
            && (file.recipient.is_some()
                || !file.record_keys.is_empty()
                || file.controller_member.is_some())
        {
            return Err(self.err(
                &key("records"),
                "record settings are given but no `records` selector",
            ));
        }
        Ok(records)
    }

    /// `passthrough_content_types`: `type/subtype`, lower-cased, never a JSON type.
    fn passthrough_types(
        &self,
        i: usize,
        file: &schema::RouteFile,
    ) -> Result<Vec<String>, ConfigError> {
        let mut passthrough = Vec::new();
        for (j, media) in file.passthrough_content_types.iter().enumerate() {
            let key = format!("route[{i}].passthrough_content_types[{j}]");
            let media = media.trim().to_ascii_lowercase();
            let valid = media
                .split_once('/')
                .is_some_and(|(t, s)| is_token(t) && is_token(s));
            if !valid || media.contains(';') {
                return Err(self.err(
                    &key,
                    format!("`{media}` is not a `type/subtype` media type"),
                ));
            }
            if crate::vocabulary::is_json_media(&media) {
                return Err(self.err(
                    &key,
                    "JSON media types are always inspected and cannot be passed through",
                ));
            }
            passthrough.push(media);
        }
        Ok(passthrough)
    }
}
