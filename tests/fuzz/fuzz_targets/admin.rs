//! The admin API's inputs: a request target's query, and a subscription posted as JSON,
//! checked as configuration would be against the example consortium. Nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn example() -> &'static varco_config::Config {
    static C: OnceLock<varco_config::Config> = OnceLock::new();
    C.get_or_init(|| {
        varco_config::load_str(include_str!("../../../deploy/examples/consortium.yaml")).expect("the example loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let q = varco_core::query::Query::of(data);
    for (k, _) in q.pairs() {
        assert!(q.get(k).is_some());
    }
    let Ok(sub) = serde_json::from_slice::<varco_config::SubscriptionConfig>(data) else { return };
    let mut candidate = example().clone();
    candidate.tenants[0].events.subscriptions.push(sub);
    if candidate.validate().is_empty() {
        let _ = varco_events::delivery::Subscription::all(&candidate);
    }
});
