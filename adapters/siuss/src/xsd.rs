//! The official SIUSS schemas (`PS_PSA_SINA201812.xsd`, `SINBA.xsd`, vendored in
//! `contracts/external/inps-siuss`), checked by the toolkit's libxml2 validator thread.

use crate::flow::Tipo;
use std::sync::OnceLock;
use varco_xml::validator::Validator;

const PS_XSD: &[u8] = include_bytes!("../../../contracts/external/inps-siuss/PS_PSA_SINA201812.xsd");
const SINBA_XSD: &[u8] = include_bytes!("../../../contracts/external/inps-siuss/SINBA.xsd");

/// The SIUSS validator.
#[derive(Debug, Clone)]
pub struct Xsd(Validator);

impl Xsd {
    /// The process's validator, started on first use (the schemas are parsed once).
    pub fn shared() -> Result<Self, String> {
        static XSD: OnceLock<Result<Xsd, String>> = OnceLock::new();
        XSD.get_or_init(|| {
            Validator::start(
                "siuss-xsd",
                vec![PS_XSD.to_vec(), SINBA_XSD.to_vec()],
                vec!["{http://inps.it/Casellario}".to_owned()],
            )
            .map(Xsd)
            .map_err(|e| format!("the SIUSS XSDs: {e}"))
        })
        .clone()
    }

    /// Validates `xml` against the schema of `tipo`: `Err` lists libxml2's findings.
    pub async fn validate(&self, tipo: Tipo, xml: String) -> Result<(), Vec<String>> {
        let i = match tipo {
            Tipo::PsPsaSina => 0,
            Tipo::Sinba => 1,
        };
        self.0.validate(i, xml).await
    }
}
