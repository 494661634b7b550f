//! Metadata API (SOAP) for picklist value sets: `readMetadata` and `upsertMetadata`
//! of `GlobalValueSet` and `StandardValueSet`. Envelopes are templated; answers are
//! read with a streaming reader that refuses DTDs.

use quick_xml::events::Event;
use quick_xml::Reader;
use reqwest::Method;

use super::client::{xml_escape, Body, Client};
use super::SfError;

/// Which kind of value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKind {
    /// `GlobalValueSet` (`customValue` list).
    Global,
    /// `StandardValueSet` (`standardValue` list).
    Standard,
}

impl SetKind {
    /// The metadata type name.
    pub fn type_name(self) -> &'static str {
        match self {
            SetKind::Global => "GlobalValueSet",
            SetKind::Standard => "StandardValueSet",
        }
    }

    fn value_element(self) -> &'static str {
        match self {
            SetKind::Global => "customValue",
            SetKind::Standard => "standardValue",
        }
    }
}

/// One picklist value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickValue {
    /// API name (the value written to records).
    pub full_name: String,
    /// Label shown to users.
    pub label: String,
    /// Active (inactive values still count toward the 1,000 cap).
    pub active: bool,
    /// The default value.
    pub default: bool,
}

/// A value set as read or to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSet {
    /// Kind.
    pub kind: SetKind,
    /// Full name.
    pub name: String,
    /// Master label (global sets).
    pub master_label: String,
    /// Sorted alphabetically.
    pub sorted: bool,
    /// Values in order.
    pub values: Vec<PickValue>,
}

const ENVELOPE_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:met="http://soap.sforce.com/2006/04/metadata"><soapenv:Header><met:SessionHeader><met:sessionId>{SESSION_ID}</met:sessionId></met:SessionHeader></soapenv:Header><soapenv:Body>"#;
const ENVELOPE_TAIL: &str = "</soapenv:Body></soapenv:Envelope>";

/// The `readMetadata` envelope for one value set.
pub fn read_envelope(kind: SetKind, name: &str) -> String {
    format!(
        "{ENVELOPE_HEAD}<met:readMetadata><met:type>{}</met:type><met:fullNames>{}</met:fullNames></met:readMetadata>{ENVELOPE_TAIL}",
        kind.type_name(),
        xml_escape(name)
    )
}

/// The `upsertMetadata` envelope writing `set` whole (elements in WSDL order).
pub fn upsert_envelope(set: &ValueSet) -> String {
    let mut values = String::new();
    for v in &set.values {
        values.push_str(&format!(
            "<met:{el}><met:fullName>{}</met:fullName><met:default>{}</met:default><met:isActive>{}</met:isActive><met:label>{}</met:label></met:{el}>",
            xml_escape(&v.full_name),
            v.default,
            v.active,
            xml_escape(&v.label),
            el = set.kind.value_element()
        ));
    }
    let body = match set.kind {
        SetKind::Global => format!(
            "<met:fullName>{}</met:fullName>{values}<met:masterLabel>{}</met:masterLabel><met:sorted>{}</met:sorted>",
            xml_escape(&set.name),
            xml_escape(&set.master_label),
            set.sorted
        ),
        SetKind::Standard => format!(
            "<met:fullName>{}</met:fullName><met:sorted>{}</met:sorted>{values}",
            xml_escape(&set.name),
            set.sorted
        ),
    };
    format!(
        "{ENVELOPE_HEAD}<met:upsertMetadata><met:metadata xsi:type=\"met:{}\">{body}</met:metadata></met:upsertMetadata>{ENVELOPE_TAIL}",
        set.kind.type_name()
    )
}

/// Element events flattened to (path of local names, text) pairs, in order.
fn leaves(xml: &[u8]) -> Result<Vec<(Vec<String>, String)>, SfError> {
    // Text is kept as is (a label's spaces around `&amp;` matter); whitespace-only
    // text between elements is dropped below.
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| SfError::Protocol(format!("Metadata API answer is not XML: {e}")))?;
        match ev {
            Event::DocType(_) => {
                return Err(SfError::Protocol(
                    "Metadata API answer has a DOCTYPE: refused".into(),
                ))
            }
            Event::Start(e) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Event::Empty(e) => {
                let mut p = stack.clone();
                p.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                out.push((p, String::new()));
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                let text = t
                    .decode()
                    .map_err(|e| SfError::Protocol(format!("bad text in answer: {e}")))?;
                let text = quick_xml::escape::unescape(&text)
                    .map_err(|e| SfError::Protocol(format!("bad entity in answer: {e}")))?
                    .into_owned();
                let between_elements =
                    text.trim().is_empty() && !matches!(out.last(), Some((p, _)) if *p == stack);
                if !between_elements {
                    out.push((stack.clone(), text));
                }
            }
            Event::GeneralRef(r) => {
                // `&amp;` and friends split a text node: append the character.
                let name = String::from_utf8_lossy(&r).into_owned();
                let ch = match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => {
                        return Err(SfError::Protocol(format!(
                            "entity &{other}; in answer: refused"
                        )))
                    }
                };
                out.push((stack.clone(), ch.to_string()));
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    // Adjacent text pieces of one element (split by references) are joined.
    let mut merged: Vec<(Vec<String>, String)> = Vec::new();
    for (p, t) in out {
        match merged.last_mut() {
            Some((lp, lt)) if *lp == p && !t.is_empty() => lt.push_str(&t),
            _ => merged.push((p, t)),
        }
    }
    Ok(merged)
}

/// A SOAP fault's code and message, if the answer is one.
fn fault(leaves: &[(Vec<String>, String)]) -> Option<String> {
    let get = |name: &str| {
        leaves
            .iter()
            .find(|(p, _)| {
                p.iter().any(|s| s == "Fault") && p.last().map(String::as_str) == Some(name)
            })
            .map(|(_, t)| t.clone())
    };
    let code = get("faultcode")?;
    Some(format!(
        "{code}: {}",
        get("faultstring").unwrap_or_default()
    ))
}

/// The leaves of an answer that is not a SOAP fault (a fault is the error).
fn answer_leaves(xml: &[u8]) -> Result<Vec<(Vec<String>, String)>, SfError> {
    let leaves = leaves(xml)?;
    match fault(&leaves) {
        Some(f) => Err(SfError::Api {
            status: 500,
            code: "SOAP_FAULT".into(),
            message: f,
        }),
        None => Ok(leaves),
    }
}

/// Parses a `readMetadata` answer; `None` when the set does not exist.
pub fn parse_read(xml: &[u8], kind: SetKind) -> Result<Option<ValueSet>, SfError> {
    let leaves = answer_leaves(xml)?;
    let el = kind.value_element();
    let mut set = ValueSet {
        kind,
        name: String::new(),
        master_label: String::new(),
        sorted: false,
        values: Vec::new(),
    };
    let mut last_value_start: Option<usize> = None;
    for (i, (path, text)) in leaves.iter().enumerate() {
        let Some(r) = path.iter().position(|s| s == "records") else {
            continue;
        };
        let rest = &path[r + 1..];
        match rest {
            [f] if f == "fullName" => set.name = text.clone(),
            [f] if f == "masterLabel" => set.master_label = text.clone(),
            [f] if f == "sorted" => set.sorted = text == "true",
            [v, f] if v == el => {
                // A value's first leaf (fullName comes first) opens a new value.
                let starts = f == "fullName";
                if starts || last_value_start.is_none() {
                    set.values.push(PickValue {
                        full_name: String::new(),
                        label: String::new(),
                        active: true,
                        default: false,
                    });
                    last_value_start = Some(i);
                }
                let v = set.values.last_mut().expect("pushed above");
                match f.as_str() {
                    "fullName" => v.full_name = text.clone(),
                    "label" => v.label = text.clone(),
                    "isActive" => v.active = text != "false",
                    "default" => v.default = text == "true",
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok((!set.name.is_empty()).then_some(set))
}

/// Parses an `upsertMetadata` answer: Ok, or the errors Salesforce gave.
pub fn parse_upsert(xml: &[u8]) -> Result<(), SfError> {
    let leaves = answer_leaves(xml)?;
    let success = leaves
        .iter()
        .find(|(p, _)| p.ends_with(&["result".to_string(), "success".to_string()]))
        .map(|(_, t)| t == "true");
    if success == Some(true) {
        return Ok(());
    }
    let msgs: Vec<String> = leaves
        .iter()
        .filter(|(p, _)| {
            p.iter().any(|s| s == "errors") && p.last().map(String::as_str) == Some("message")
        })
        .map(|(_, t)| t.clone())
        .collect();
    Err(SfError::Api {
        status: 200,
        code: "UPSERT_METADATA_FAILED".into(),
        message: if msgs.is_empty() {
            "upsertMetadata answered without success".into()
        } else {
            msgs.join("; ")
        },
    })
}

/// Reads a value set from the org.
pub async fn read(client: &Client, kind: SetKind, name: &str) -> Result<Option<ValueSet>, SfError> {
    let resp = soap(client, read_envelope(kind, name)).await?;
    parse_read(&resp, kind)
}

/// Writes a value set whole.
pub async fn upsert(client: &Client, set: &ValueSet) -> Result<(), SfError> {
    let resp = soap(client, upsert_envelope(set)).await?;
    parse_upsert(&resp)
}

async fn soap(client: &Client, envelope: String) -> Result<bytes::Bytes, SfError> {
    let path = format!("/services/Soap/m/{}", client.config().api_version);
    let resp = client
        .call(Method::POST, &path, &Body::Soap(envelope))
        .await?;
    // Faults come back as HTTP 500 with a SOAP body: parsed by the caller.
    if !(resp.status.is_success() || resp.status.as_u16() == 500) {
        return Err(SfError::Api {
            status: resp.status.as_u16(),
            code: "HTTP".into(),
            message: String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]).into_owned(),
        });
    }
    Ok(resp.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="http://soap.sforce.com/2006/04/metadata" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body><readMetadataResponse><result><records xsi:type="GlobalValueSet">
<fullName>OneKey_Specialty</fullName>
<customValue><fullName>WUS.SP.001</fullName><default>false</default><label>Allergy &amp; Immunology</label></customValue>
<customValue><fullName>WUS.SP.002</fullName><default>false</default><isActive>false</isActive><label>Anesthesiology</label></customValue>
<masterLabel>OneKey Specialty</masterLabel><sorted>false</sorted>
</records></result></readMetadataResponse></soapenv:Body></soapenv:Envelope>"#;

    #[test]
    fn reads_values_labels_and_activity() {
        let s = parse_read(READ.as_bytes(), SetKind::Global)
            .unwrap()
            .unwrap();
        assert_eq!(s.name, "OneKey_Specialty");
        assert_eq!(s.master_label, "OneKey Specialty");
        assert_eq!(s.values.len(), 2);
        assert_eq!(s.values[0].label, "Allergy & Immunology");
        assert!(s.values[0].active);
        assert!(!s.values[1].active);
    }

    #[test]
    fn an_empty_records_element_is_no_set() {
        let xml = r#"<Envelope><Body><readMetadataResponse><result><records xsi:nil="true"/></result></readMetadataResponse></Body></Envelope>"#;
        assert_eq!(parse_read(xml.as_bytes(), SetKind::Global).unwrap(), None);
    }

    #[test]
    fn faults_and_doctypes_are_errors() {
        let f = r#"<soapenv:Envelope xmlns:soapenv="x"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>Invalid Session ID</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let e = parse_read(f.as_bytes(), SetKind::Global)
            .unwrap_err()
            .to_string();
        assert!(e.contains("INVALID_SESSION_ID"), "{e}");
        let d = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>"#;
        let e = parse_read(d.as_bytes(), SetKind::Global)
            .unwrap_err()
            .to_string();
        assert!(e.contains("DOCTYPE"), "{e}");
    }

    #[test]
    fn upsert_answers_parse() {
        let ok = r#"<Envelope><Body><upsertMetadataResponse><result><created>false</created><fullName>X</fullName><success>true</success></result></upsertMetadataResponse></Body></Envelope>"#;
        parse_upsert(ok.as_bytes()).unwrap();
        let bad = r#"<Envelope><Body><upsertMetadataResponse><result><errors><message>too many values</message><statusCode>FIELD_INTEGRITY_EXCEPTION</statusCode></errors><fullName>X</fullName><success>false</success></result></upsertMetadataResponse></Body></Envelope>"#;
        let e = parse_upsert(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("too many values"), "{e}");
    }

    #[test]
    fn written_envelopes_read_back() {
        let set = ValueSet {
            kind: SetKind::Global,
            name: "OneKey_Role".into(),
            master_label: "OneKey Role".into(),
            sorted: false,
            values: vec![PickValue {
                full_name: "WUS.ROL.01".into(),
                label: "Practitioner <&>".into(),
                active: true,
                default: false,
            }],
        };
        let env = upsert_envelope(&set);
        assert!(env.contains("<met:label>Practitioner &lt;&amp;&gt;</met:label>"));
        // The same body shape wrapped as a read answer parses back to the set.
        let body = env
            .split("<met:metadata xsi:type=\"met:GlobalValueSet\">")
            .nth(1)
            .unwrap()
            .split("</met:metadata>")
            .next()
            .unwrap();
        let answer = format!("<Envelope xmlns:met=\"m\"><Body><readMetadataResponse><result><records>{body}</records></result></readMetadataResponse></Body></Envelope>");
        assert_eq!(
            parse_read(answer.as_bytes(), SetKind::Global).unwrap(),
            Some(set)
        );
    }
}
