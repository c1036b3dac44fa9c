//! The station's receipts (`paSendRT`, `paSendRTV2`) as the pagoPA node sends them: stored once
//! and published as events, across concurrent retries, crashes and the instances behind one
//! station; secondary creditors; the whole receipt; checks against the back-office.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

#[path = "pagopa_common.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use varco_tests::{Backend, Varco};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_stored_once_and_published() {
    let env = setup().await;
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-0001", "0000000000001"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let again = node(&env, "paSendRT", with(ids(), receipt("rt-0001", "0000000000001"))).await;
    assert_eq!(fault_code(&again), "PAA_RECEIPT_DUPLICATA", "{again}");
    let v2 = node(&env, "paSendRTV2", with(ids(), receipt("rt-0002", "0000000000001"))).await;
    assert_eq!(v2["outcome"], "OK", "{v2}");
    // The same receipt ten times at once: exactly one effect.
    let mut tasks = Vec::new();
    let env = std::sync::Arc::new(env);
    for _ in 0..10 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            node(&env, "paSendRT", with(ids(), receipt("rt-0003", "0000000000001"))).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r["outcome"].as_str() {
            Some("OK") => ok += 1,
            _ => assert_eq!(fault_code(&r), "PAA_RECEIPT_DUPLICATA", "{r}"),
        }
    }
    assert_eq!(ok, 1, "a concurrent duplicate had a second effect");
    // The back-office gets each receipt once, as a CloudEvent.
    let got = wait_hook(&env.hook, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = env.hook.requests();
    assert_eq!(got_all.len(), 3, "{got:?}");
    let e: Value = serde_json::from_str(got_all[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(e["type"], "it.varco.tributi.pagamento.ricevuto.v1");
    assert_eq!(e["source"], "/enti/c_e783/pagopa");
    assert_eq!(e["subject"], &notice("0000000000001")[1..]);
    assert_eq!(e["data"]["receiptId"], "rt-0001");
    assert_eq!(e["data"]["importoCentesimi"], 12000);
    assert_eq!(e["data"]["pagatore"]["codiceFiscale"], "RSSMRA80A01H501U");
}

/// A multi-beneficiary notice (the comune's TARI with the Provincia's TEFA): the node sends the
/// one receipt, with the comune's `fiscalCode`, to both creditors. Each accepts it and
/// publishes its own share; an ente in neither place refuses it. A KO receipt is acknowledged
/// without a payment event, and a 0.00 receipt is a semantic error, not "send again".
/// Before, the Provincia answered `PAA_ID_DOMINIO_ERRATO` and never got its receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_a_secondary_creditor() {
    let env = setup().await;
    let shared = |id: &str, prov: bool| {
        let mut r = receipt(id, "0000000000001");
        let mut t = r["receipt"]["transferList"]["transfer"][0].clone();
        t["transferAmount"] = json!("110.00");
        let mut tefa = t.clone();
        tefa["idTransfer"] = json!("2");
        tefa["transferAmount"] = json!("10.00");
        tefa["remittanceInformation"] = json!("TEFA 2026");
        if prov {
            tefa["fiscalCodePA"] = json!(PROV);
        }
        r["receipt"]["transferList"]["transfer"] = json!([t, tefa]);
        r
    };
    let prov_ids = json!({"idPA": PROV, "idBrokerPA": BROKER, "idStation": STATION});
    let r =
        node_at(&env, "/p_mc/pagopa/paForNode", "paSendRT", with(prov_ids.clone(), shared("rt-tefa-1", true))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let r = node(&env, "paSendRT", with(ids(), shared("rt-tefa-1", true))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    // Not a creditor of this notice at all.
    let r = node_at(&env, "/p_mc/pagopa/paForNode", "paSendRTV2", with(prov_ids, shared("rt-tefa-2", false))).await;
    assert_eq!(fault_code(&r), "PAA_ID_DOMINIO_ERRATO", "{r}");
    // A KO receipt, then a 0.00 one.
    let mut ko = receipt("rt-ko-1", "0000000000001");
    ko["receipt"]["outcome"] = json!("KO");
    assert_eq!(node(&env, "paSendRT", with(ids(), ko)).await["outcome"], "OK");
    let mut zero = receipt("rt-zero-1", "0000000000001");
    zero["receipt"]["paymentAmount"] = json!("0.00");
    let r = node(&env, "paSendRT", with(ids(), zero)).await;
    assert_eq!(fault_code(&r), "PAA_SEMANTICA", "{r}");

    wait_hook(&env.hook, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events: Vec<Value> =
        env.hook.requests().iter().map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap()).collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let of = |src: &str| events.iter().find(|e| e["source"] == src).unwrap_or_else(|| panic!("no event from {src}"));
    let p = of("/enti/p_mc/pagopa");
    assert_eq!(p["data"]["idPA"], PROV);
    assert_eq!(p["data"]["importoCentesimi"], 1000);
    assert_eq!(p["data"]["causale"], "TEFA 2026");
    assert_eq!(p["subject"], &notice("0000000000001")[1..], "the primary's IUV");
    let c = of("/enti/c_e783/pagopa");
    assert_eq!(c["data"]["importoCentesimi"], 11000);
}

/// Two instances behind one station, on one Redis: the node's retries of a receipt reach
/// either, in turn or at once, and the receipt is published exactly once. Before, each
/// instance had only its own file and both published it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_publish_each_receipt_once() {
    let redis = varco_tests::Redis::start().await;
    let bo = Backend::start("backoffice").await;
    bo.serve_static(&format!("/debt-positions/{}", &notice("0000000000001")[1..]), Some(position("payable", 12000)));
    let hook = Backend::start("receipts-hook").await;
    let hook_v2 = Backend::start("receipts-v2-hook").await;
    let cfg = format!("redis: {{url: \"{}\", timeout: 500ms}}\n{}", redis.url(), station_config(&bo, &hook, &hook_v2));
    let instance = |name: &'static str| {
        let cfg = cfg.clone();
        async move {
            Env {
                v: Varco::start_with_env(&cfg, &[("HOOK_SECRET", "s3cret-for-receipts")]).await,
                bo: Backend::start(name).await,
                hook: Backend::start(name).await,
                hook_v2: Backend::start(name).await,
            }
        }
    };
    let (env_a, env_b) = (instance("unused-a").await, instance("unused-b").await);
    // In turn: the second instance knows the first stored it.
    let r = node(&env_a, "paSendRT", with(ids(), receipt("rt-ha-1", "0000000000001"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let r = node(&env_b, "paSendRT", with(ids(), receipt("rt-ha-1", "0000000000001"))).await;
    assert_eq!(fault_code(&r), "PAA_RECEIPT_DUPLICATA", "{r}");
    // At once, five times on each: one stores it, the others answer a duplicate or "send again".
    let (a, b) = (std::sync::Arc::new(env_a), std::sync::Arc::new(env_b));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let env = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            node(&env, "paSendRTV2", with(ids(), receipt("rt-ha-2", "0000000000001"))).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r["outcome"].as_str() {
            Some("OK") => ok += 1,
            _ => assert!(["PAA_RECEIPT_DUPLICATA", "PAA_SYSTEM_ERROR"].contains(&fault_code(&r)), "{r}"),
        }
    }
    assert_eq!(ok, 1, "a receipt stored by more than one instance");
    wait_hook(&hook, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ids_seen: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["data"]["receiptId"].to_string())
        .collect();
    assert_eq!(ids_seen.len(), 2, "{ids_seen:?}");
    assert_ne!(ids_seen[0], ids_seen[1]);
    drop(redis);
}

/// The whole receipt reaches the ente's accounting as `…pagamento.ricevuto.v2` (transfers with
/// their accounts, PSP, fees, channel, payment method, metadata, standIn, debtor and payer),
/// checked against its contract; a receipt without `paymentDateTime` gets none there (before:
/// the time it arrived, silently), and v1, which requires one, takes its `applicationDate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_v2_carry_the_whole_receipt() {
    let env = setup().await;
    let mut r = receipt("rt-full-1", "0000000000001");
    let rc = r["receipt"].as_object_mut().unwrap();
    rc.remove("paymentDateTime");
    rc.insert("pspFiscalCode".into(), json!("00799960158"));
    rc.insert("paymentMethod".into(), json!("creditCard"));
    rc.insert("fee".into(), json!("1.50"));
    rc.insert("metadata".into(), json!({"mapEntry": [{"key": "annoRiferimento", "value": "2026"}]}));
    rc.insert("standIn".into(), json!(false));
    let rr = node(&env, "paSendRT", with(ids(), r)).await;
    assert_eq!(rr["outcome"], "OK", "{rr}");
    let got = wait_hook(&env.hook_v2, 1).await;
    let e: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(e["type"], "it.varco.tributi.pagamento.ricevuto.v2");
    let d = &e["data"];
    assert_eq!(d["receiptId"], "rt-full-1");
    assert_eq!((d["importoCentesimi"].as_u64(), d["importoTotaleCentesimi"].as_u64()), (Some(12000), Some(12000)));
    assert!(d.get("dataPagamento").is_none(), "{d}");
    assert_eq!(d["dataApplicazione"], "2026-11-24");
    assert_eq!(d["psp"]["id"], "BCITITMM");
    assert_eq!(d["psp"]["codiceFiscale"], "00799960158");
    assert_eq!(d["psp"]["canale"], "BCITITMM_01");
    assert_eq!(d["metodoPagamento"], "creditCard");
    assert_eq!(d["commissioneCentesimi"], 150);
    assert_eq!(d["standIn"], false);
    assert_eq!(d["metadata"][0]["key"], "annoRiferimento");
    assert_eq!(d["creditorePrimario"]["codiceFiscale"], ID_PA);
    assert_eq!(d["debitore"]["nome"], "Mario Rossi");
    assert_eq!(d["pagatore"]["codiceFiscale"], "RSSMRA80A01H501U");
    let t = &d["trasferimenti"][0];
    assert_eq!((t["id"].as_u64(), t["proprio"].as_bool()), (Some(1), Some(true)));
    assert_eq!(t["iban"], "IT60X0542811101000000123456");
    assert_eq!(t["categoria"], "9/0101100IM/");
    let v1 = wait_hook(&env.hook, 1).await;
    let e1: Value = serde_json::from_str(v1[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(e1["data"]["dataPagamento"], "2026-11-24T00:00:00");
}

/// `check_receipts`: a receipt for a position the back-office does not know, or cancelled, is
/// refused with the fault pagoPA's own GPD station gives; a known one is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_checked_against_the_back_office_when_asked() {
    let env = setup().await;
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-chk-1", "0000000000009"))).await;
    assert_eq!(fault_code(&r), "PAA_PAGAMENTO_SCONOSCIUTO", "{r}");
    let r = node(&env, "paSendRTV2", with(ids(), receipt("rt-chk-2", "0000000000004"))).await;
    assert_eq!(fault_code(&r), "PAA_PAGAMENTO_ANNULLATO", "{r}");
    // Paid or expired positions still take their receipt: the citizen has paid.
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-chk-3", "0000000000002"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    // A refused receipt left no trace: once the position exists, the same id is accepted.
    env.bo
        .serve_static(&format!("/debt-positions/{}", &notice("0000000000009")[1..]), Some(position("payable", 12000)));
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-chk-1", "0000000000009"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
}
