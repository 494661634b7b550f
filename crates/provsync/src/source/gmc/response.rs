//! Reads a `GetDoctorsForDBResponse` envelope with a streaming, namespace-aware
//! reader that refuses DTDs and entities.

use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

const TNS: &[u8] = b"https://webcache.gmc-uk.org/GMCWebServices/";

/// One doctor element, fields as sent (missing ones empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDoctor {
    /// 1-based position in the list (for error entries).
    pub position: usize,
    /// Field name -> text.
    pub fields: Vec<(String, String)>,
}

impl RawDoctor {
    /// A field's text, when present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// `ReturnCode` (empty when absent).
    pub return_code: String,
    /// `GMCRequestID`.
    pub gmc_request_id: String,
    /// Whether a `Doctors` element was present.
    pub has_list: bool,
    /// The doctors, in order.
    pub doctors: Vec<RawDoctor>,
    /// A SOAP fault's text, when the answer was a fault.
    pub fault: Option<String>,
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The XML is malformed or not a SOAP response.
    #[error("malformed response at byte {at}: {why}")]
    Malformed {
        /// Byte offset.
        at: u64,
        /// What is wrong.
        why: String,
    },
    /// A DTD (and so possible entities) was sent.
    #[error("the response carries a DOCTYPE, which is refused")]
    Doctype,
}

/// Parses a response body.
pub fn parse(body: &[u8]) -> Result<Response, ParseError> {
    let mut reader = NsReader::from_reader(body);
    let mut buf = Vec::new();
    let mut out = Response::default();
    // Text of the innermost open element (text and references arrive in pieces).
    let mut text = String::new();
    // Local names of open elements below the result (or the fault).
    let mut path: Vec<String> = Vec::new();
    let mut current: Option<RawDoctor> = None;
    loop {
        let at = reader.buffer_position();
        let (ns, event) =
            reader
                .read_resolved_event_into(&mut buf)
                .map_err(|e| ParseError::Malformed {
                    at,
                    why: e.to_string(),
                })?;
        let in_tns = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == TNS);
        match event {
            Event::DocType(_) => return Err(ParseError::Doctype),
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if in_tns && local == "GetDoctorsForDBResponse_Doctor" {
                    current = Some(RawDoctor {
                        position: out.doctors.len() + 1,
                        fields: Vec::new(),
                    });
                }
                if in_tns && local == "Doctors" {
                    out.has_list = true;
                }
                if local == "Fault" && out.fault.is_none() {
                    out.fault = Some(String::new());
                }
                text.clear();
                path.push(local);
            }
            Event::Empty(e) => {
                let local = e.local_name();
                if in_tns && local.as_ref() == b"Doctors" {
                    out.has_list = true;
                }
            }
            Event::Text(t) => {
                let piece = t.decode().map_err(|e| ParseError::Malformed {
                    at,
                    why: format!("undecodable text: {e}"),
                })?;
                text.push_str(&piece);
            }
            Event::CData(t) => {
                let piece = t.decode().map_err(|e| ParseError::Malformed {
                    at,
                    why: format!("undecodable CDATA: {e}"),
                })?;
                text.push_str(&piece);
            }
            Event::GeneralRef(r) => {
                text.push_str(&resolve_ref(&r).map_err(|why| ParseError::Malformed { at, why })?);
            }
            Event::End(e) => {
                let name = path.last().cloned().unwrap_or_default();
                let value = std::mem::take(&mut text).trim().to_owned();
                if e.local_name().as_ref() == b"GetDoctorsForDBResponse_Doctor" {
                    if let Some(d) = current.take() {
                        out.doctors.push(d);
                    }
                } else if let Some(d) = current.as_mut() {
                    d.fields.push((name, value));
                } else if let Some(f) = out.fault.as_mut() {
                    if name == "faultstring" || name == "Text" {
                        f.push_str(&value);
                    }
                } else if in_tns && name == "ReturnCode" {
                    out.return_code = value;
                } else if in_tns && name == "GMCRequestID" {
                    out.gmc_request_id = value;
                }
                path.pop();
            }
            Event::Eof => {
                if !path.is_empty() {
                    return Err(ParseError::Malformed {
                        at: reader.buffer_position(),
                        why: format!("document ends inside <{}>", path.join("/")),
                    });
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

/// The text of a character or predefined entity reference; any other entity is refused.
fn resolve_ref(r: &BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| format!("entity &{name}; is not allowed (only XML's predefined ones)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetDoctorsForDBResponse xmlns="https://webcache.gmc-uk.org/GMCWebServices/"><GetDoctorsForDBResult><Doctors><GetDoctorsForDBResponse_Doctor><GMCReferenceNumber>1234567</GMCReferenceNumber><DoctorLastName>O&apos;Neill</DoctorLastName></GetDoctorsForDBResponse_Doctor></Doctors><ReturnCode>0</ReturnCode></GetDoctorsForDBResult></GetDoctorsForDBResponse></soap:Body></soap:Envelope>"#;

    #[test]
    fn doctors_and_return_code_are_read() {
        let r = parse(OK.as_bytes()).unwrap();
        assert_eq!(r.return_code, "0");
        assert!(r.has_list);
        assert_eq!(r.doctors.len(), 1);
        assert_eq!(r.doctors[0].get("GMCReferenceNumber"), Some("1234567"));
        assert_eq!(r.doctors[0].get("DoctorLastName"), Some("O'Neill"));
    }

    #[test]
    fn a_doctype_is_refused() {
        let evil = format!("<!DOCTYPE x [<!ENTITY e \"boom\">]>{}", &OK[38..]);
        assert_eq!(parse(evil.as_bytes()), Err(ParseError::Doctype));
    }

    #[test]
    fn a_truncated_response_is_malformed_not_empty() {
        let err = parse(&OK.as_bytes()[..OK.len() / 2]).unwrap_err();
        assert!(matches!(err, ParseError::Malformed { .. }), "{err}");
    }

    #[test]
    fn a_fault_is_reported_with_its_text() {
        let f = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>bad call</faultstring></soap:Fault></soap:Body></soap:Envelope>"#;
        assert_eq!(
            parse(f.as_bytes()).unwrap().fault.as_deref(),
            Some("bad call")
        );
    }

    #[test]
    fn an_undeclared_entity_is_refused() {
        let x = OK.replace("O&apos;Neill", "&xxe;");
        let err = parse(x.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("&xxe;"), "{err}");
    }
}
