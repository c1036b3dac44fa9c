//! The SOAP/XML toolkit shared by the pagoPA station, the SIUSS e-service and back-office
//! mediation: one strict reader for outside XML, SOAP envelopes and faults in both versions,
//! the XSD and WSDL 1.1 models that mediation maps through, and the libxml2 validator thread.

pub mod check;
pub mod reader;
pub mod schema;
pub mod simple;
pub mod soap;
pub mod validator;
pub mod wsdl;

pub use reader::{esc, esc_attr, is_xml_char, parse, parse_with, Attr, Element, Limits};
