//! What the national-platform adapters read from others: a SIUSS benefit from a back-office
//! (JSON, turned into a flow's XML) and an ANPR answer (JSON, mapped for the back-office).
//! The first byte chooses. Nothing panics, and every flow varco writes is well-formed XML
//! (read back by the strict reader of the pagoPA station, which refuses DTDs and bad escapes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    if which % 2 == 0 {
        let Ok(sub) = varco_adapter_siuss::Submission::parse(rest) else { return };
        let ente = varco_adapter_siuss::Ente {
            codice: "E783".into(),
            denominazione: "Comune di Macerata".into(),
            indirizzo: "E783".into(),
            cf_operatore: "RSSMRA80A01H501U".into(),
        };
        if let Ok(xml) = sub.xml(&ente, "E783.PS.20261203.0000001") {
            if let Err(e) = varco_adapter_pagopa::xml::parse(xml.as_bytes()) {
                panic!("varco wrote a flow that is not well-formed XML ({e}): {xml}");
            }
        }
    } else {
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
        for mapped in [
            varco_adapter_anpr::mapping::residenza(&answer),
            varco_adapter_anpr::mapping::famiglia("RSSMRA80A01H501U", &answer),
        ]
        .into_iter()
        .flatten()
        {
            assert!(serde_json::to_vec(&mapped).is_ok());
        }
        let _ = varco_adapter_anpr::mapping::anomalies(answer.get("listaErrori"));
    }
});
