//! Who the caller is, once varco has verified it: the same type serves every way in (bearer
//! JWT, PDND voucher, API key, a citizen's session) and every way out (`X-Varco-*` headers,
//! the signed identity token).

use crate::headers as names;

/// The names SPID/CIE tokens and userinfo carry the fiscal number under (the eID one first).
pub const FISCAL_NUMBER_CLAIMS: [&str; 3] =
    ["https://attributes.eid.gov.it/fiscal_number", "https://attributes.spid.gov.it/fiscal_number", "fiscal_number"];

/// The codice fiscale of a set of claims (`claim` reads one by name): the first of
/// [`FISCAL_NUMBER_CLAIMS`] present, `TINIT-` removed, upper case.
pub fn fiscal_code_of(claim: impl Fn(&str) -> Option<String>) -> Option<String> {
    FISCAL_NUMBER_CLAIMS
        .iter()
        .find_map(|k| claim(k))
        .map(|v| v.strip_prefix("TINIT-").unwrap_or(&v).to_ascii_uppercase())
}

/// What varco knows about the caller after verification.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub acr: Option<String>,
    /// Codice fiscale without the `TINIT-` prefix.
    pub fiscal_code: Option<String>,
    /// PDND `purposeId`.
    pub purpose_id: Option<String>,
    /// PDND `eserviceId` and `producerId`.
    pub eservice_id: Option<String>,
    pub producer_id: Option<String>,
    /// PDND `digest.value` (hex SHA-256 of the AUDIT_REST_02 tracking evidence).
    pub voucher_digest: Option<String>,
    pub jti: Option<String>,
    /// A citizen's names and e-mail, as the OP's userinfo gave them (session logins).
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub exp: u64,
    /// The `X-Varco-*` headers for the back-office, built once when the token is verified.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Identity {
    /// The verified identity as `X-Varco-*` headers (values that are not valid header text
    /// are left out). Called once per verified token; the result is kept in `headers`.
    pub fn header_list(&self, tenant: &str) -> Vec<(http::HeaderName, http::HeaderValue)> {
        let scopes = self.scopes.join(" ");
        [
            (&names::TENANT, Some(tenant)),
            (&names::ISSUER, Some(self.issuer.as_str())),
            (&names::SUBJECT, Some(self.subject.as_str())),
            (&names::CLIENT_ID, self.client_id.as_deref()),
            (&names::FISCAL_CODE, self.fiscal_code.as_deref()),
            (&names::ACR, self.acr.as_deref()),
            // No scopes (a citizen's session, a token without `scope`): no header.
            (&names::SCOPES, (!scopes.is_empty()).then_some(scopes.as_str())),
            (&names::PURPOSE_ID, self.purpose_id.as_deref()),
            (&names::GIVEN_NAME, self.given_name.as_deref()),
            (&names::FAMILY_NAME, self.family_name.as_deref()),
            (&names::EMAIL, self.email.as_deref()),
        ]
        .into_iter()
        .filter_map(|(n, v)| Some((n.clone(), http::HeaderValue::from_str(v?).ok()?)))
        .collect()
    }
}
