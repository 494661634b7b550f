//! Metadata API (SOAP, `POST /services/Soap/m/{ver}`): `readMetadata` and
//! `upsertMetadata` of `GlobalValueSet` and `StandardValueSet`, per the v63 WSDL.
//! Writing a set replaces its list: values left out become inactive and still count
//! toward the 1,000-value cap; a value is at most 255 characters; at most 10
//! components per call. The values feed restricted picklists at once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;

use super::rest::{Body, Exec, Reply};
use super::store::{PickValue, ValueSet};

/// Components per read or upsert call: "Limit: 10" (Metadata API Developer Guide,
/// readMetadata() and upsertMetadata() arguments,
/// https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/meta_upsertMetadata.htm).
/// The fault code for going over is a guess.
pub const MAX_COMPONENTS: usize = 10;
/// Values per value set: "A global value set can have up to 1,000 total values
/// (inclusive of inactive values)" (Metadata API Developer Guide, GlobalValueSet,
/// https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/meta_globalvalueset.htm).
/// The result's error code for going over is a guess.
pub const MAX_VALUES: usize = 1_000;
/// Characters of a value's API name or label (guess: 255, and the code
/// `STRING_TOO_LONG` for going over, are not confirmed by the pages read).
pub const MAX_VALUE_CHARS: usize = 255;
const MD_NS: &str = "http://soap.sforce.com/2006/04/metadata";

/// A small element tree of the request.
#[derive(Debug, Clone, Default)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// `xsi:type` (prefix stripped), if any.
    pub xsi_type: Option<String>,
    /// Children.
    pub children: Vec<Element>,
    /// Text content.
    pub text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn text_of(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_owned())
    }

    fn bool_of(&self, name: &str) -> Option<bool> {
        self.text_of(name).map(|t| t == "true" || t == "1")
    }
}

/// A parsed call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `SessionHeader/sessionId`.
    pub session_id: String,
    /// The operation element in the Body.
    pub operation: Element,
}

fn resolve_ref(r: &BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| format!("entity &{name}; is not allowed"))
}

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_owned(),
        None => s.into_owned(),
    }
}

fn element_of(e: &quick_xml::events::BytesStart<'_>) -> Element {
    let xsi_type = e
        .attributes()
        .flatten()
        .find(|a| local(a.key.as_ref()) == "type")
        .map(|a| local(&a.value));
    Element {
        name: local(e.name().as_ref()),
        xsi_type,
        children: Vec::new(),
        text: String::new(),
    }
}

/// Reads the envelope into a tree (DOCTYPE and custom entities refused).
pub fn parse(body: &[u8]) -> Result<Call, String> {
    let mut reader = Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("malformed XML: {e}"))?
        {
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::Start(e) => stack.push(element_of(&e)),
            Event::Empty(e) => {
                let el = element_of(&e);
                stack.last_mut().ok_or("unbalanced XML")?.children.push(el);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| format!("bad text: {e}"))?;
                stack
                    .last_mut()
                    .ok_or("unbalanced XML")?
                    .text
                    .push_str(&text);
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                stack
                    .last_mut()
                    .ok_or("unbalanced XML")?
                    .text
                    .push_str(&text);
            }
            Event::GeneralRef(r) => {
                let text = resolve_ref(&r)?;
                stack
                    .last_mut()
                    .ok_or("unbalanced XML")?
                    .text
                    .push_str(&text);
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("unbalanced XML")?;
                stack
                    .last_mut()
                    .ok_or("unbalanced XML")?
                    .children
                    .push(done);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let root = stack.pop().ok_or("empty document")?;
    let envelope = root
        .children
        .into_iter()
        .find(|e| e.name == "Envelope")
        .ok_or("the message has no SOAP Envelope")?;
    let session_id = envelope
        .child("Header")
        .and_then(|h| h.child("SessionHeader"))
        .and_then(|s| s.text_of("sessionId"))
        .unwrap_or_default();
    let operation = envelope
        .child("Body")
        .and_then(|b| b.children.first())
        .cloned()
        .ok_or("the SOAP Body holds no operation")?;
    Ok(Call {
        session_id,
        operation,
    })
}

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns=\"{MD_NS}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
}

fn fault_xml(code: &str, message: &str) -> String {
    envelope(&format!(
        "<soapenv:Fault><faultcode xmlns:sf=\"urn:fault.tooling.soap.sforce.com\">{}</faultcode><faultstring>{}</faultstring></soapenv:Fault>",
        esc(code),
        esc(message)
    ))
}

/// A SOAP fault (HTTP 500), for requests refused before the gate.
pub fn fault_response(code: &str, message: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "text/xml; charset=utf-8")],
        fault_xml(code, message),
    )
        .into_response()
}

fn xml_reply(status: StatusCode, text: String) -> Reply {
    Reply {
        status,
        body: Body::Csv(text),
        headers: Vec::new(),
    }
}

fn fault(code: &str, message: &str) -> Reply {
    xml_reply(StatusCode::INTERNAL_SERVER_ERROR, fault_xml(code, message))
}

/// Runs a parsed call.
pub fn handle(x: &mut Exec<'_>, call: &Call) -> Reply {
    match call.operation.name.as_str() {
        "readMetadata" => {
            x.kind = "metadata_read";
            read(x, &call.operation)
        }
        "upsertMetadata" => {
            x.kind = "metadata_upsert";
            upsert(x, &call.operation)
        }
        other => {
            x.kind = "metadata_other";
            fault(
                "sf:INVALID_OPERATION",
                &format!("INVALID_OPERATION: {other} is not served by this emulator"),
            )
        }
    }
}

fn too_many(x: &Exec<'_>, n: usize) -> Reply {
    let message =
        format!("LIMIT_EXCEEDED: Too many components: {n}; a call takes at most {MAX_COMPONENTS}");
    x.emu.stats.violation("metadata_components", &message);
    fault("sf:LIMIT_EXCEEDED", &message)
}

fn read(x: &mut Exec<'_>, op: &Element) -> Reply {
    let kind = op.text_of("type").unwrap_or_default();
    let names: Vec<String> = op
        .all("fullNames")
        .map(|e| e.text.trim().to_owned())
        .collect();
    x.records = names.len() as u64;
    if names.len() > MAX_COMPONENTS {
        return too_many(x, names.len());
    }
    if kind != "GlobalValueSet" && kind != "StandardValueSet" {
        return fault(
            "sf:INVALID_TYPE",
            &format!("INVALID_TYPE: {kind} is not served by this emulator"),
        );
    }
    let mut records = String::new();
    for name in &names {
        if let Some(vs) = x.org.value_set(&kind, name) {
            records.push_str(&value_set_xml(vs));
        }
    }
    xml_reply(
        StatusCode::OK,
        envelope(&format!(
            "<readMetadataResponse><result>{records}</result></readMetadataResponse>"
        )),
    )
}

fn value_xml(tag: &str, v: &PickValue) -> String {
    let active = if v.active {
        String::new()
    } else {
        "<isActive>false</isActive>".into()
    };
    format!(
        "<{tag}><fullName>{}</fullName><default>{}</default>{active}<label>{}</label></{tag}>",
        esc(&v.full_name),
        v.default,
        esc(&v.label)
    )
}

fn value_set_xml(vs: &ValueSet) -> String {
    if vs.kind == "GlobalValueSet" {
        let values: String = vs
            .values
            .iter()
            .map(|v| value_xml("customValue", v))
            .collect();
        let description = vs
            .description
            .as_deref()
            .map(|d| format!("<description>{}</description>", esc(d)))
            .unwrap_or_default();
        format!(
            "<records xsi:type=\"GlobalValueSet\"><fullName>{}</fullName>{values}{description}<masterLabel>{}</masterLabel><sorted>{}</sorted></records>",
            esc(&vs.full_name),
            esc(vs.master_label.as_deref().unwrap_or(&vs.full_name)),
            vs.sorted
        )
    } else {
        let values: String = vs
            .values
            .iter()
            .map(|v| value_xml("standardValue", v))
            .collect();
        format!(
            "<records xsi:type=\"StandardValueSet\"><fullName>{}</fullName><sorted>{}</sorted>{values}</records>",
            esc(&vs.full_name),
            vs.sorted
        )
    }
}

/// One component's result.
struct Outcome {
    full_name: String,
    created: bool,
    error: Option<(String, String)>,
}

fn upsert(x: &mut Exec<'_>, op: &Element) -> Reply {
    let components: Vec<&Element> = op.all("metadata").collect();
    x.records = components.len() as u64;
    if components.len() > MAX_COMPONENTS {
        return too_many(x, components.len());
    }
    let outcomes: Vec<Outcome> = components.iter().map(|c| upsert_one(x, c)).collect();
    let results: String = outcomes
        .iter()
        .map(|o| {
            let errors = o
                .error
                .as_ref()
                .map(|(code, msg)| format!("<errors><message>{}</message><statusCode>{}</statusCode></errors>", esc(msg), esc(code)))
                .unwrap_or_default();
            format!(
                "<result><created>{}</created>{errors}<fullName>{}</fullName><success>{}</success></result>",
                o.created,
                esc(&o.full_name),
                o.error.is_none()
            )
        })
        .collect();
    xml_reply(
        StatusCode::OK,
        envelope(&format!(
            "<upsertMetadataResponse>{results}</upsertMetadataResponse>"
        )),
    )
}

/// Merges a written list into the stored one: listed values as given (active unless
/// `isActive` is false), stored values left out kept but inactive.
pub fn merge(stored: &[PickValue], written: Vec<PickValue>) -> Vec<PickValue> {
    let mut out = written;
    for old in stored {
        if !out.iter().any(|v| v.full_name == old.full_name) {
            out.push(PickValue {
                active: false,
                default: false,
                ..old.clone()
            });
        }
    }
    out
}

fn upsert_one(x: &mut Exec<'_>, c: &Element) -> Outcome {
    let kind = c.xsi_type.clone().unwrap_or_default();
    let full_name = c.text_of("fullName").unwrap_or_default();
    let fail = |code: &str, msg: String| Outcome {
        full_name: full_name.clone(),
        created: false,
        error: Some((code.to_owned(), msg)),
    };
    let value_tag = match kind.as_str() {
        "GlobalValueSet" => "customValue",
        "StandardValueSet" => "standardValue",
        other => {
            return fail(
                "INVALID_TYPE",
                format!("{other} is not served by this emulator"),
            )
        }
    };
    if full_name.is_empty() {
        return fail("FIELD_INTEGRITY_EXCEPTION", "fullName is required".into());
    }
    let existing = x.org.value_set(&kind, &full_name).cloned();
    if kind == "StandardValueSet" && existing.is_none() {
        return fail(
            "INVALID_CROSS_REFERENCE_KEY",
            format!("In field: fullName - no StandardValueSet named {full_name} found"),
        );
    }
    let mut written = Vec::new();
    for v in c.all(value_tag) {
        let name = v.text_of("fullName").unwrap_or_default();
        let label = v
            .text_of("label")
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| name.clone());
        for (what, text) in [("fullName", &name), ("label", &label)] {
            if text.chars().count() > MAX_VALUE_CHARS {
                let msg =
                    format!("{what}: data value too large: {text} (max length={MAX_VALUE_CHARS})");
                x.emu.stats.violation("value_length", &msg);
                return fail("STRING_TOO_LONG", msg);
            }
        }
        if name.is_empty() {
            return fail(
                "FIELD_INTEGRITY_EXCEPTION",
                "A value's fullName is required".into(),
            );
        }
        if written.iter().any(|w: &PickValue| w.full_name == name) {
            return fail(
                "DUPLICATE_DEVELOPER_NAME",
                format!("Duplicate value: {name}"),
            );
        }
        written.push(PickValue {
            full_name: name,
            label,
            default: v.bool_of("default").unwrap_or(false),
            active: v.bool_of("isActive").unwrap_or(true),
        });
    }
    let values = merge(existing.as_ref().map_or(&[][..], |e| &e.values), written);
    if values.len() > MAX_VALUES {
        let msg = format!(
            "Value set {full_name} would have {} values; at most {MAX_VALUES} are allowed, inactive ones included",
            values.len()
        );
        x.emu.stats.violation("value_set_size", &msg);
        return fail("LIMIT_EXCEEDED", msg);
    }
    let vs = ValueSet {
        kind: kind.clone(),
        full_name: full_name.clone(),
        master_label: c
            .text_of("masterLabel")
            .or_else(|| existing.as_ref().and_then(|e| e.master_label.clone()))
            .or_else(|| (kind == "GlobalValueSet").then(|| full_name.clone())),
        description: c.text_of("description"),
        sorted: c.bool_of("sorted").unwrap_or(false),
        values,
    };
    x.org.put_value_set(vs);
    Outcome {
        full_name,
        created: existing.is_none(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, active: bool) -> PickValue {
        PickValue {
            full_name: name.into(),
            label: name.into(),
            default: false,
            active,
        }
    }

    #[test]
    fn omitted_values_are_deactivated_not_dropped() {
        let stored = vec![pv("A", true), pv("B", true)];
        let merged = merge(&stored, vec![pv("B", true), pv("C", true)]);
        assert_eq!(merged, vec![pv("B", true), pv("C", true), pv("A", false)]);
    }

    #[test]
    fn parses_an_upsert_envelope_and_refuses_doctype() {
        let xml = br#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Header><SessionHeader xmlns="http://soap.sforce.com/2006/04/metadata"><sessionId>tok&amp;1</sessionId></SessionHeader></soapenv:Header><soapenv:Body><upsertMetadata xmlns="http://soap.sforce.com/2006/04/metadata"><metadata xsi:type="GlobalValueSet"><fullName>OneKey_Role</fullName><customValue><fullName>Chief</fullName><default>false</default><label>Chief</label></customValue></metadata></upsertMetadata></soapenv:Body></soapenv:Envelope>"#;
        let call = parse(xml).unwrap();
        assert_eq!(call.session_id, "tok&1");
        assert_eq!(call.operation.name, "upsertMetadata");
        let m = call.operation.child("metadata").unwrap();
        assert_eq!(m.xsi_type.as_deref(), Some("GlobalValueSet"));
        assert_eq!(m.all("customValue").count(), 1);
        let doctype = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>"#;
        assert!(parse(doctype).is_err());
    }
}
