//! The schema model read from XSDs: types, recursion, facets, errors.

use super::*;
use crate::reader::parse;

const XSD: &str = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:t" targetNamespace="urn:t" elementFormDefault="qualified">
  <xs:simpleType name="Cf"><xs:restriction base="xs:string"><xs:pattern value="[A-Z0-9]{16}"/></xs:restriction></xs:simpleType>
  <xs:simpleType name="Stato"><xs:restriction base="xs:string"><xs:enumeration value="A"/><xs:enumeration value="B"/></xs:restriction></xs:simpleType>
  <xs:complexType name="Nodo"><xs:sequence>
    <xs:element name="cf" type="t:Cf"/>
    <xs:element name="figli" type="t:Nodo" minOccurs="0" maxOccurs="unbounded"/>
    <xs:choice><xs:element name="a" type="xs:int"/><xs:element name="b" type="xs:date"/></xs:choice>
  </xs:sequence><xs:attribute name="v" type="xs:boolean" use="required"/></xs:complexType>
  <xs:complexType name="Esteso"><xs:complexContent><xs:extension base="t:Nodo"><xs:sequence>
    <xs:element name="stato" type="t:Stato" form="unqualified"/></xs:sequence></xs:extension></xs:complexContent></xs:complexType>
  <xs:element name="radice"><xs:complexType><xs:sequence><xs:element ref="t:altro" minOccurs="0"/></xs:sequence></xs:complexType></xs:element>
  <xs:element name="altro" type="t:Esteso"/>
</xs:schema>"#;

fn model() -> Model {
    let doc = parse(XSD.as_bytes()).unwrap();
    Model::from_schemas(&[(&doc, Scope::default())]).unwrap()
}

#[test]
fn types_are_read_with_recursion_extension_choice_and_refs() {
    let m = model();
    let nodo = m.named(&QName::new("urn:t", "Nodo")).unwrap();
    let Ty::Complex(c) = m.ty(nodo) else { panic!() };
    let names: Vec<_> = c.fields.iter().map(|f| (f.name.as_str(), f.min, f.max, f.choice.is_some())).collect();
    assert_eq!(names, [("cf", 1, 1, false), ("figli", 0, u32::MAX, false), ("a", 0, 1, true), ("b", 0, 1, true)]);
    assert_eq!(c.fields[1].ty, nodo, "a recursive type refers to itself");
    assert!(c.attrs[0].required);
    let Ty::Complex(e) = m.ty(m.named(&QName::new("urn:t", "Esteso")).unwrap()) else { panic!() };
    assert_eq!(e.fields.len(), 5);
    assert_eq!(e.fields[4].ns, None, "form=unqualified");
    assert_eq!(e.fields[0].ns.as_deref(), Some("urn:t"));
    let radice = &m.elements[&QName::new("urn:t", "radice")];
    let Ty::Complex(r) = m.ty(radice.ty) else { panic!() };
    assert_eq!((r.fields[0].name.as_str(), r.fields[0].min), ("altro", 0));
}

#[test]
fn simple_values_are_checked_by_their_facets() {
    let m = model();
    let Ty::Simple(cf) = m.ty(m.named(&QName::new("urn:t", "Cf")).unwrap()) else { panic!() };
    assert!(cf.check("RSSMRA80A01H501U").is_ok());
    assert!(cf.check("rssmra80a01h501u").unwrap_err().contains("pattern"));
    let Ty::Simple(st) = m.ty(m.named(&QName::new("urn:t", "Stato")).unwrap()) else { panic!() };
    assert!(st.check("C").unwrap_err().contains("one of A, B"));
    let b = |x| Simple::builtin(Builtin::of(x).unwrap());
    assert!(b("int").check(" 42 ").is_ok());
    assert!(b("int").check("4294967296").is_err());
    assert!(b("unsignedByte").check("-1").is_err());
    assert!(b("decimal").check("-152.50").is_ok());
    assert!(b("decimal").check("1e3").is_err());
    assert!(b("date").check("2026-12-03").is_ok());
    assert!(b("date").check("2026-13-03").is_err());
    assert!(b("dateTime").check("2026-12-03T10:00:00.5+01:00").is_ok());
    assert!(b("base64Binary").check("aGVsbG8=").is_ok());
    assert!(b("base64Binary").check("***").is_err());
    assert!(b("boolean").check("yes").is_err());
}

#[test]
fn undefined_types_and_prefixes_are_errors() {
    let bad = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t"><xs:element name="x" type="q:T"/></xs:schema>"#;
    let doc = parse(bad.as_bytes()).unwrap();
    assert!(Model::from_schemas(&[(&doc, Scope::default())]).unwrap_err().contains("not declared"));
    let bad = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:t" targetNamespace="urn:t"><xs:element name="x" type="t:T"/></xs:schema>"#;
    let doc = parse(bad.as_bytes()).unwrap();
    assert!(Model::from_schemas(&[(&doc, Scope::default())]).unwrap_err().contains("not defined"));
}
