//! The configuration loader (YAML, then validation) on any text: `varco check`, start-up and
//! every reload read it. A configuration is accepted or refused with issues, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = varco_config::load_str(text) {
        assert!(cfg.validate().is_empty(), "loaded but invalid");
    }
});
