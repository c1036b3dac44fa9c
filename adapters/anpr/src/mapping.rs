//! Between the back-office's plain JSON and ANPR's E002 messages (C001, C021): the request
//! ANPR expects, and its answers turned into flat, snake_case JSON (contracts/openapi/anpr.yaml).
//! Absent ANPR fields are left out, never sent as empty strings.

use serde_json::{json, Map, Value};

/// The `RichiestaE002` of one lookup by codice fiscale.
pub fn request(id_operazione: &str, codice_fiscale: &str, data: &str, motivo: &str, caso_uso: &str) -> Value {
    json!({
        "idOperazioneClient": id_operazione,
        "criteriRicerca": { "codiceFiscale": codice_fiscale },
        "datiRichiesta": {
            "dataRiferimentoRichiesta": data,
            "motivoRichiesta": motivo,
            "casoUso": caso_uso,
        },
    })
}

/// A string at `path` below `v`, when present and not blank.
fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// An object of the fields that have a value.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let m: Map<String, Value> = fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect();
    Value::Object(m)
}

fn s(v: Option<String>) -> Option<Value> {
    v.map(Value::String)
}

/// A place (`TipoLuogoEvento`, `TipoLuogoNascita3000`): an Italian comune or a place abroad.
fn place(v: &Value) -> Option<Value> {
    let o = object(vec![
        ("comune", s(text(v, &["comune", "nomeComune"]))),
        ("codice_istat", s(text(v, &["comune", "codiceIstat"]))),
        ("provincia", s(text(v, &["comune", "siglaProvinciaIstat"]))),
        ("localita", s(text(v, &["localita", "descrizioneLocalita"]))),
        ("stato", s(text(v, &["localita", "descrizioneStato"]))),
        ("codice_stato", s(text(v, &["localita", "codiceStato"]))),
        ("luogo_eccezionale", s(text(v, &["luogoEccezionale"]))),
    ]);
    o.as_object().is_some_and(|m| !m.is_empty()).then_some(o)
}

/// Who a `TipoGeneralita` describes.
fn person(g: &Value) -> Vec<(&'static str, Option<Value>)> {
    vec![
        ("codice_fiscale", s(text(g, &["codiceFiscale", "codFiscale"]))),
        ("cognome", s(text(g, &["cognome"]))),
        ("nome", s(text(g, &["nome"]))),
        ("sesso", s(text(g, &["sesso"]))),
        ("data_nascita", s(text(g, &["dataNascita"]))),
        ("luogo_nascita", g.get("luogoNascita").and_then(place)),
    ]
}

/// One `TipoResidenza`: an address in Italy, or abroad (AIRE).
fn residence(r: &Value) -> Value {
    let i = r.get("indirizzo").unwrap_or(&Value::Null);
    let street = [text(i, &["toponimo", "specie"]), text(i, &["toponimo", "denominazioneToponimo"])]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let number = [text(i, &["numeroCivico", "numero"]), text(i, &["numeroCivico", "lettera"])]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("");
    let abroad = r.get("localitaEstera").map(|e| {
        let x = e.get("indirizzoEstero").unwrap_or(&Value::Null);
        object(vec![
            ("indirizzo", s(text(x, &["toponimo", "denominazione"]))),
            ("civico", s(text(x, &["toponimo", "numeroCivico"]))),
            ("cap", s(text(x, &["cap"]))),
            ("localita", s(text(x, &["localita", "descrizioneLocalita"]))),
            ("stato", s(text(x, &["localita", "descrizioneStato"]))),
            ("consolato", s(text(e, &["consolato", "descrizioneConsolato"]))),
        ])
    });
    object(vec![
        ("tipo", s(text(r, &["tipoIndirizzo"]))),
        ("indirizzo", s(Some(street).filter(|x| !x.is_empty()))),
        ("civico", s(Some(number).filter(|x| !x.is_empty()))),
        ("interno", s(text(i, &["numeroCivico", "civicoInterno", "interno1"]))),
        ("scala", s(text(i, &["numeroCivico", "civicoInterno", "scala"]))),
        ("cap", s(text(i, &["cap"]))),
        ("frazione", s(text(i, &["frazione"]))),
        ("comune", s(text(i, &["comune", "nomeComune"]))),
        ("codice_istat", s(text(i, &["comune", "codiceIstat"]))),
        ("provincia", s(text(i, &["comune", "siglaProvinciaIstat"]))),
        ("presso", s(text(r, &["presso"]))),
        ("estero", abroad),
        ("dal", s(text(r, &["dataDecorrenzaResidenza"]))),
    ])
}

/// ANPR's `listaAnomalie` / `listaErrori` entries.
pub fn anomalies(list: Option<&Value>) -> Vec<Value> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            object(vec![
                ("codice", s(text(a, &["codiceErroreAnomalia"]))),
                ("tipo", s(text(a, &["tipoErroreAnomalia"]))),
                ("testo", s(text(a, &["testoErroreAnomalia"]))),
                ("campo", s(text(a, &["campoErroreAnomalia"]))),
                ("valore", s(text(a, &["valoreErroreAnomalia"]))),
            ])
        })
        .collect()
}

fn subjects(answer: &Value) -> Vec<&Value> {
    answer
        .pointer("/listaSoggetti/datiSoggetto")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn tail(out: &mut Vec<(&'static str, Option<Value>)>, answer: &Value) {
    let anomalies = anomalies(answer.get("listaAnomalie"));
    out.push(("anomalie", (!anomalies.is_empty()).then_some(Value::Array(anomalies))));
    out.push(("id_operazione_anpr", s(text(answer, &["idOperazioneANPR"]))));
}

/// C001's answer as the back-office's residence: `None` when ANPR lists nobody.
pub fn residenza(answer: &Value) -> Option<Value> {
    let subject = *subjects(answer).first()?;
    let g = subject.get("generalita").unwrap_or(&Value::Null);
    let mut out = person(g);
    out.push(("id_anpr", s(text(subject, &["identificativi", "idANPR"]))));
    let residences: Vec<Value> =
        subject.get("residenza").and_then(Value::as_array).into_iter().flatten().map(residence).collect();
    out.push(("residenza", Some(Value::Array(residences))));
    tail(&mut out, answer);
    Some(object(out))
}

/// C021's answer as the back-office's family: `None` when ANPR lists nobody.
pub fn famiglia(codice_fiscale: &str, answer: &Value) -> Option<Value> {
    let list = subjects(answer);
    if list.is_empty() {
        return None;
    }
    let members: Vec<Value> = list
        .iter()
        .map(|m| {
            let mut f = person(m.get("generalita").unwrap_or(&Value::Null));
            f.push(("id_anpr", s(text(m, &["identificativi", "idANPR"]))));
            let l = m.get("legameSoggetto").unwrap_or(&Value::Null);
            let link = object(vec![
                ("codice", s(text(l, &["codiceLegame"]))),
                ("tipo", s(text(l, &["tipoLegame"]))),
                ("progressivo", s(text(l, &["progressivoComponente"]))),
                ("dal", s(text(l, &["dataDecorrenza"]))),
            ]);
            f.push(("legame", link.as_object().is_some_and(|o| !o.is_empty()).then_some(link)));
            f.push(("data_decesso", s(text(m, &["datiDecesso", "dataEvento"]))));
            object(f)
        })
        .collect();
    let mut out = vec![
        ("codice_fiscale", Some(Value::String(codice_fiscale.to_owned()))),
        ("componenti", Some(Value::Array(members))),
    ];
    tail(&mut out, answer);
    Some(object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_what_e002_requires() {
        let r = request("1733232000000001", "RSSMRA80A01H501U", "2026-12-03", "prot. 42/2026", "C001");
        assert_eq!(r["criteriRicerca"]["codiceFiscale"], "RSSMRA80A01H501U");
        assert_eq!(r["datiRichiesta"]["motivoRichiesta"], "prot. 42/2026");
        assert_eq!(r["datiRichiesta"]["casoUso"], "C001");
        assert_eq!(r["idOperazioneClient"], "1733232000000001");
    }

    #[test]
    fn a_residence_answer_is_flattened_and_blanks_are_left_out() {
        let answer = json!({
            "idOperazioneANPR": "998877",
            "listaSoggetti": {"datiSoggetto": [{
                "generalita": {
                    "codiceFiscale": {"codFiscale": "RSSMRA80A01H501U", "validitaCF": "1"},
                    "cognome": "ROSSI", "nome": "MARIO", "sesso": "M", "dataNascita": "1980-01-01",
                    "luogoNascita": {"comune": {"nomeComune": "ROMA", "codiceIstat": "058091", "siglaProvinciaIstat": "RM"}},
                    "note": ""
                },
                "identificativi": {"idANPR": "AB12345CD"},
                "residenza": [{
                    "tipoIndirizzo": "1",
                    "indirizzo": {
                        "cap": "62100",
                        "comune": {"nomeComune": "MACERATA", "codiceIstat": "043023", "siglaProvinciaIstat": "MC"},
                        "toponimo": {"specie": "VIA", "denominazioneToponimo": "ROMA"},
                        "numeroCivico": {"numero": "10", "lettera": "B", "civicoInterno": {"interno1": "3"}}
                    },
                    "dataDecorrenzaResidenza": "2015-06-01"
                }]
            }]},
            "listaAnomalie": [{"codiceErroreAnomalia": "A1", "testoErroreAnomalia": "dato parziale", "campoErroreAnomalia": ""}]
        });
        let r = residenza(&answer).unwrap();
        assert_eq!(r["codice_fiscale"], "RSSMRA80A01H501U");
        assert_eq!(r["luogo_nascita"]["codice_istat"], "058091");
        assert_eq!(r["id_anpr"], "AB12345CD");
        let home = &r["residenza"][0];
        assert_eq!((home["indirizzo"].as_str(), home["civico"].as_str()), (Some("VIA ROMA"), Some("10B")));
        assert_eq!((home["comune"].as_str(), home["interno"].as_str()), (Some("MACERATA"), Some("3")));
        assert_eq!(home["dal"], "2015-06-01");
        assert!(home.get("frazione").is_none() && home.get("estero").is_none(), "absent fields are left out");
        assert_eq!(r["anomalie"][0], json!({"codice": "A1", "testo": "dato parziale"}));
        assert_eq!(r["id_operazione_anpr"], "998877");
        assert_eq!(residenza(&json!({"listaSoggetti": {"datiSoggetto": []}})), None);
        assert_eq!(residenza(&json!({})), None);
    }

    #[test]
    fn a_family_answer_lists_each_member_with_the_link() {
        let answer = json!({"listaSoggetti": {"datiSoggetto": [
            {"generalita": {"codiceFiscale": {"codFiscale": "RSSMRA80A01H501U"}, "nome": "MARIO"},
             "legameSoggetto": {"codiceLegame": "1", "tipoLegame": "intestatario scheda"}},
            {"generalita": {"codiceFiscale": {"codFiscale": "BNCLCU82B41E783X"}, "nome": "LUCIA"},
             "legameSoggetto": {"codiceLegame": "2", "tipoLegame": "coniuge", "dataDecorrenza": "2010-05-08"},
             "datiDecesso": {"dataEvento": "2024-02-01"}}
        ]}});
        let f = famiglia("RSSMRA80A01H501U", &answer).unwrap();
        assert_eq!(f["componenti"].as_array().unwrap().len(), 2);
        assert_eq!(f["componenti"][1]["legame"], json!({"codice": "2", "tipo": "coniuge", "dal": "2010-05-08"}));
        assert_eq!(f["componenti"][1]["data_decesso"], "2024-02-01");
        assert!(f.get("anomalie").is_none());
        assert_eq!(famiglia("X", &json!({"listaSoggetti": {}})), None);
    }
}
