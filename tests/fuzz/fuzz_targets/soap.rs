//! A paForNode SOAP message as the pagoPA node (or anyone) could send it: the strict XML
//! reader, the envelope, the operation and the XSD's types. Nothing panics; a message that
//! passes is well-formed XML whose re-escaped text parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use varco_adapter_pagopa::xml;

fuzz_target!(|data: &[u8]| {
    let _ = varco_adapter_pagopa::check_message(data);
    if let Ok(doc) = xml::parse(data) {
        // Text varco echoes into answers goes through `esc`; what it writes must read back.
        for t in std::iter::once(&doc.text).chain(doc.children.iter().map(|c| &c.text)) {
            let again = format!("<a>{}</a>", xml::esc(t));
            let back = xml::parse(again.as_bytes()).expect("escaped text parses");
            assert_eq!(&back.text, t);
        }
    }
});
