//! A gateway with the privacy desk wired to a webhook receiver, the setup privacy tests share.

use super::config::{SHIPPED_RULES, WEBHOOK_SECRET, shipments_route, with_privacy_contacts};
use super::gateway::TestGateway;
use super::receiver::WebhookReceiver;
use super::upstream::MockUpstream;

pub struct PrivacySetup {
    pub gw: TestGateway,
    pub receiver: WebhookReceiver,
    pub _sample: recipient_gateway::demo::SampleApi,
}

/// A gateway whose `acme` has a webhook at a receiver and `globex` only an inbox, in front of the
/// demo API (controllers named by `customer_id`), with `privacy` as its `[privacy]` section.
pub async fn privacy_setup(privacy: &str) -> PrivacySetup {
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let sample = recipient_gateway::demo::start_sample_api("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (hook, api) = (receiver.addr, sample.addr);
    let privacy = privacy.to_string();
    let gw = TestGateway::start_with(MockUpstream::start().await, move |base| {
        let base = with_privacy_contacts(&base, hook);
        let route = shipments_route(
            api,
            &format!(
                "controller_member = \"customer_id\"\nrules = [\"{SHIPPED_RULES}/recipient.toml\"]"
            ),
        );
        format!("{base}{route}\n[privacy]\n{privacy}\n")
    })
    .await;
    PrivacySetup {
        gw,
        receiver,
        _sample: sample,
    }
}
