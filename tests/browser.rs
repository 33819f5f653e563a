//! The pages people use, in a real browser: headless Chromium driven over WebDriver by Debian's
//! chromedriver. A recipient files privacy requests on the recipient page with the keyboard and
//! follows the status link; a reviewer opens the HTML report and finds its matrix, and the change
//! review's. On every page axe-core (WCAG 2.2 A/AA and best practices) finds nothing.
//!
//! `harness = false`: without `chromium` and `chromedriver` on the `PATH` the tests show as
//! ignored, never as passed (`.ci/run` installs both and sets `GATEWAY_TEST_REQUIRE_BROWSER`, so
//! in CI they run or fail).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    config::{KEY_ACME, unused_addr},
    dir::TestDir,
    harness::{Needs, axe_core, on_path, run_tests},
    privacy::{PrivacySetup, privacy_setup},
};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const JANE: &str = "jane.doe@example.com";
const JANE_TRACKING: &str = "1ZACME0000000001";
const BIN: &str = env!("CARGO_BIN_EXE_recipient-gateway");
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's code for the Enter key.
const ENTER: &str = "\u{E007}";
/// WebDriver's code for the Tab key.
const TAB: &str = "\u{E004}";

fn main() -> std::process::ExitCode {
    run_tests(&[
        (
            "a_recipient_files_requests_on_the_page_with_the_keyboard",
            Needs::Browser,
            || Box::pin(a_recipient_files_requests_on_the_page_with_the_keyboard()),
        ),
        (
            "the_review_report_shows_its_matrix_in_a_browser",
            Needs::Browser,
            || Box::pin(the_review_report_shows_its_matrix_in_a_browser()),
        ),
    ])
}

/// chromedriver on a free port, with one headless Chromium session at a phone's width.
struct Browser {
    driver: Child,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    /// `http://127.0.0.1:{port}/session/{id}`
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = unused_addr().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        let mut browser = Browser {
            driver,
            http,
            session: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser
            .call(Method::GET, "/status", None)
            .await
            .is_none_or(|v| v["value"]["ready"] != true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The gateway's certificate is from the test CA; a phone-sized window.
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": on_path("chromium").expect("chromium is on the PATH"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=390,844"]
            }
        }}});
        let created = browser
            .call(Method::POST, "/session", Some(capabilities))
            .await
            .expect("a session");
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser.session = format!("{}/session/{id}", browser.session);
        browser
    }

    /// One WebDriver command; `None` when the driver does not answer (yet).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Option<Value> {
        let uri = if path.starts_with("/status") || path == "/session" {
            let base = self.session.split("/session/").next().unwrap_or_default();
            format!("{base}{path}")
        } else {
            format!("{}{path}", self.session)
        };
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let response = self.http.request(request).await.ok()?;
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&bytes).ok()
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.call(method, path, body).await.expect("an answer");
        assert!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    async fn count(&self, css: &str) -> usize {
        self.command(
            Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .as_array()
        .map_or(0, Vec::len)
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let text = self
            .command(Method::GET, &format!("/element/{element}/text"), None)
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    /// Types `keys` into the element, as a keyboard would (focusing it first).
    async fn keys(&self, css: &str, keys: &str) {
        let element = self.find(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": keys})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// axe-core's violations on the page shown, under WCAG 2.2 A and AA and axe's best
    /// practices. The pages' CSP refuses an injected `<script>`, so axe is evaluated through the
    /// DevTools protocol (`Runtime.evaluate`), as `@axe-core/puppeteer` does.
    async fn accessibility_violations(&self) -> Vec<Value> {
        let axe = std::fs::read_to_string(axe_core()).expect("axe-core is installed");
        let expression = format!(
            "{axe}\n;axe.run(document, {{runOnly: {{type: 'tag', values: ['wcag2a', 'wcag2aa', \
             'wcag21a', 'wcag21aa', 'wcag22a', 'wcag22aa', 'best-practice']}}}}).then(r => \
             r.violations.map(v => ({{id: v.id, impact: v.impact, help: v.help, \
             nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}})))"
        );
        let answer = self
            .command(
                Method::POST,
                "/goog/cdp/execute",
                Some(json!({"cmd": "Runtime.evaluate", "params": {
                    "expression": expression, "awaitPromise": true, "returnByValue": true
                }})),
            )
            .await;
        answer["result"]["value"]
            .as_array()
            .unwrap_or_else(|| panic!("axe did not run: {answer}"))
            .clone()
    }

    /// Fails unless axe-core finds nothing on the page shown (`what` names it).
    async fn assert_accessible(&self, what: &str) {
        let violations = self.accessibility_violations().await;
        assert!(
            violations.is_empty(),
            "{what}: {}",
            serde_json::to_string_pretty(&violations).unwrap()
        );
    }

    /// Waits for the page whose `<h1>` says `heading` (after a submit or a link).
    /// Waits until an element matches `css`: a page that keeps its heading (a form shown again
    /// with its mistakes) is told from the one before it by what it adds.
    async fn wait_for_element(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(css).await == 0 {
            assert!(Instant::now() < deadline, "waited for `{css}`");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_heading(&self, heading: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = self
                .script("const h = document.querySelector('h1'); return h ? h.textContent : '';")
                .await;
            if shown.as_str() == Some(heading) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited for `{heading}`, shows {shown}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The confirmation's text with its request id taken out, so two confirmations compare.
async fn confirmation_without_id(browser: &Browser) -> String {
    let id = browser.text("#request-id").await;
    assert_eq!(id.len(), 32, "{id}");
    browser.text("main").await.replace(&id, "<id>")
}

async fn a_recipient_files_requests_on_the_page_with_the_keyboard() {
    let PrivacySetup {
        gw,
        receiver: _receiver,
        _sample,
    } = privacy_setup("rate_limit_per_minute = 1000\nplatform_name = \"ParcelNet\"").await;
    let listed = gw.h1().await.get("/v1/shipments", Some(KEY_ACME)).await;
    assert_eq!(listed.status, StatusCode::OK);
    let page = format!("https://localhost:{}/privacy/requests", gw.addr.port());
    let browser = Browser::start().await;

    browser.go(&page).await;
    browser
        .wait_for_heading("Ask about your personal data")
        .await;
    // It fits a phone: nothing scrolls sideways at 390 px.
    let fits = browser
        .script("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await;
    assert_eq!(fits, true, "the page scrolls sideways on a phone");
    // Every control has a label the browser associates with it.
    let unlabelled = browser
        .script(
            "return [...document.querySelectorAll('input, textarea')]\
             .filter(e => e.labels.length === 0).map(e => e.name);",
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
    assert!(browser.text("main").await.contains("ParcelNet"));
    browser.assert_accessible("the form").await;

    // With the keyboard only: Space picks the request type, Tab moves on, Enter submits.
    browser.keys("input[name=type][value=delete]", " ").await;
    browser.keys("#email", JANE).await;
    browser.keys("#email", TAB).await;
    let focused = browser.script("return document.activeElement.id;").await;
    assert_eq!(
        focused, "phone",
        "Tab goes from the e-mail to the phone field"
    );
    browser.keys("#tracking_number", JANE_TRACKING).await;
    browser.keys("#tracking_number", ENTER).await;
    browser
        .wait_for_heading("Your request has been received")
        .await;
    assert_eq!(browser.text(".controller-name").await, "Acme");
    assert!(browser.text("main").await.contains("privacy@acme.example"));
    browser.assert_accessible("the confirmation").await;

    // The status link leads to the status page.
    browser.click("#status-link").await;
    browser.wait_for_heading("Your privacy request").await;
    assert!(!browser.text("#status").await.is_empty());
    browser.assert_accessible("the status page").await;

    // A refusal: a status number that does not exist.
    browser
        .go(&format!("{page}/00000000000000000000000000000000"))
        .await;
    browser.wait_for_element("main h1").await;
    assert!(
        browser
            .text("main")
            .await
            .contains("no privacy request with this number")
    );
    browser.assert_accessible("the refusal").await;

    // Unverified, held or not: the same confirmation, and no controller named.
    let mut confirmations = Vec::new();
    for (email, tracking) in [(JANE, ""), ("nobody@example.com", JANE_TRACKING)] {
        browser.go(&page).await;
        browser
            .wait_for_heading("Ask about your personal data")
            .await;
        browser.click("input[name=type][value=access]").await;
        browser.keys("#email", email).await;
        if !tracking.is_empty() {
            browser.keys("#tracking_number", tracking).await;
        }
        browser.click("button[type=submit]").await;
        browser
            .wait_for_heading("Your request has been received")
            .await;
        assert_eq!(browser.count(".controller-name").await, 0);
        confirmations.push(confirmation_without_id(&browser).await);
    }
    assert_eq!(confirmations[0], confirmations[1]);

    // A mistake is explained on the form, next to the field, and announced.
    browser.go(&page).await;
    browser
        .wait_for_heading("Ask about your personal data")
        .await;
    browser.click("input[name=type][value=access]").await;
    browser.keys("#email", "jane").await;
    browser.click("button[type=submit]").await;
    // The form comes back under the same heading: wait for what the new page adds.
    browser.wait_for_element("[role=alert]").await;
    browser
        .wait_for_heading("Ask about your personal data")
        .await;
    assert!(
        browser
            .text("[role=alert]")
            .await
            .contains("Enter an e-mail address")
    );
    assert!(
        browser
            .text("#email-error")
            .await
            .contains("Enter an e-mail address")
    );
    let kept = browser
        .script("return document.getElementById('email').value;")
        .await;
    assert_eq!(kept, "jane", "what was typed is kept");
    browser.assert_accessible("the form with a mistake").await;

    // Every mistake at once: no request type and a malformed e-mail are both reported.
    browser.go(&page).await;
    browser
        .wait_for_heading("Ask about your personal data")
        .await;
    browser.keys("#email", "jane").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_element("[role=alert]").await;
    let summary = browser.text("[role=alert]").await;
    assert!(
        summary.contains("Choose what you are asking for"),
        "{summary}"
    );
    assert!(summary.contains("Enter an e-mail address"), "{summary}");
    browser
        .assert_accessible("the form with two mistakes")
        .await;
}

async fn the_review_report_shows_its_matrix_in_a_browser() {
    let dir = TestDir::new();
    let output = Command::new(BIN)
        .args([
            "check",
            "--config",
            "tests/fixtures/review/gateway.toml",
            "--samples",
            "tests/fixtures/review/samples",
            "--format",
            "html",
        ])
        .output()
        .expect("check runs");
    let report = dir.write("report.html", &String::from_utf8(output.stdout).unwrap());
    let browser = Browser::start().await;
    browser.go(&format!("file://{}", report.display())).await;
    browser
        .wait_for_heading("Redaction review: tests/fixtures/review/gateway.toml")
        .await;

    assert_eq!(browser.count("table.matrix[data-route=orders]").await, 1);
    let headers = browser.text("table.matrix thead").await;
    for caller in ["controller", "other customer", "internal service"] {
        assert!(headers.contains(caller), "{headers}");
    }
    // The consignee's e-mail: visible to its controller, redacted for everyone else, in words
    // and in colour.
    let row = "table.matrix tbody tr:has(th.field)";
    let email_row = browser
        .script(&format!(
            "return [...document.querySelectorAll('{row}')]\
             .find(r => r.cells[0].textContent === '$.consignee.email')\
             .cells.length;"
        ))
        .await;
    assert_eq!(email_row, 7, "a field and six callers");
    let cells = browser
        .script(&format!(
            "const r = [...document.querySelectorAll('{row}')]\
             .find(r => r.cells[0].textContent === '$.consignee.email');\
             return [...r.cells].slice(1, 4).map(c => [c.className, c.textContent.split('rule')[0].trim(),\
             getComputedStyle(c).backgroundColor]);"
        ))
        .await;
    assert_eq!(cells[0][0], "visible");
    assert_eq!(cells[0][1], "visible");
    assert_eq!(cells[1][0], "redacted");
    assert_eq!(cells[1][1], "redacted");
    assert_ne!(cells[0][2], cells[1][2], "colour tells them apart too");

    // The rule is one click away.
    let cell = "table.matrix td.redacted details";
    assert_eq!(
        browser
            .script(&format!("return document.querySelector('{cell}').open;"))
            .await,
        false
    );
    browser.click(&format!("{cell} summary")).await;
    let opened = browser.text(&format!("{cell} div")).await;
    assert!(opened.contains("consignee-email"), "{opened}");
    assert!(opened.contains("rules/orders.toml"), "{opened}");

    // Coverage findings from the samples stand out.
    assert_eq!(browser.count("tr.finding").await, 4);
    let outline = browser
        .script(
            "return getComputedStyle(document.querySelector('tr.finding th.field')).outlineStyle;",
        )
        .await;
    assert_eq!(outline, "solid");
    browser.assert_accessible("the review report").await;

    // The change review against a config whose e-mail rule was weaker: its page passes too,
    // and the changed cell says what changed in words.
    let old_rules = std::fs::read_to_string("tests/fixtures/review/rules/orders.toml")
        .unwrap()
        .replacen("action = \"redact\"", "action = \"remove\"", 1);
    dir.write("old/rules/orders.toml", &old_rules);
    let old = dir.write(
        "old/gateway.toml",
        &std::fs::read_to_string("tests/fixtures/review/gateway.toml").unwrap(),
    );
    let output = Command::new(BIN)
        .args([
            "check",
            "--config",
            "tests/fixtures/review/gateway.toml",
            "--against",
        ])
        .arg(&old)
        .args(["--format", "html"])
        .output()
        .expect("check runs");
    let change = dir.write("change.html", &String::from_utf8(output.stdout).unwrap());
    browser.go(&format!("file://{}", change.display())).await;
    browser.wait_for_element("table.matrix").await;
    assert!(browser.count("td.widened").await > 0);
    assert!(browser.text("td.widened").await.contains("widened"));
    browser.assert_accessible("the change review").await;
}
