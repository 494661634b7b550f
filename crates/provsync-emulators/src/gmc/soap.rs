//! SOAP 1.1 / 1.2 envelopes of `GetDoctorsForDB`: reading the request (a streaming
//! namespace-aware reader that refuses DTDs) and writing the response.

use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::register::Doctor;

/// The service's XML namespace.
pub const TNS: &str = "https://webcache.gmc-uk.org/GMCWebServices/";
/// SOAP 1.1 envelope namespace.
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Which SOAP version a request came in (the answer uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SOAP 1.1 (`text/xml`, `SOAPAction` header).
    Soap11,
    /// SOAP 1.2 (`application/soap+xml`).
    Soap12,
}

impl Version {
    fn ns(self) -> &'static str {
        match self {
            Version::Soap11 => SOAP11,
            Version::Soap12 => SOAP12,
        }
    }

    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Version::Soap11 => "text/xml; charset=utf-8",
            Version::Soap12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// A parsed `GetDoctorsForDB` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    /// Operation (the body's first element, local name).
    pub operation: String,
    /// `request/DesignatedBodyCode`.
    pub designated_body_code: String,
    /// `request/ClientRequestID`.
    pub client_request_id: String,
    /// `Username`.
    pub username: String,
    /// `Password`.
    pub password: String,
}

/// Reads a request envelope; `Err` says what is wrong (for a SOAP Client fault).
pub fn parse_call(body: &[u8]) -> Result<(Version, Call), String> {
    let mut reader = NsReader::from_reader(body);
    let mut buf = Vec::new();
    let mut text = String::new();
    let mut version = None;
    let mut call = Call::default();
    let mut path: Vec<String> = Vec::new();
    let mut in_body = false;
    loop {
        let at = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| format!("malformed XML after byte {at}: {e}"))?;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        match event {
            Event::DocType(_) => return Err("DOCTYPE is not allowed in a SOAP message".into()),
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.is_empty() {
                    version = match (ns.as_str(), local.as_str()) {
                        (SOAP11, "Envelope") => Some(Version::Soap11),
                        (SOAP12, "Envelope") => Some(Version::Soap12),
                        _ => {
                            return Err(format!(
                                "root element {{{ns}}}{local} is not a SOAP Envelope"
                            ))
                        }
                    };
                } else if path.len() == 1 && local == "Body" {
                    in_body = true;
                } else if in_body && path.len() == 2 {
                    if ns != TNS {
                        return Err(format!("operation {{{ns}}}{local} is not in {TNS}"));
                    }
                    call.operation = local.clone();
                }
                text.clear();
                path.push(local);
            }
            Event::Empty(e) if in_body && path.len() == 2 => {
                call.operation = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
            }
            Event::Text(t) => {
                text.push_str(&t.decode().map_err(|e| format!("bad text: {e}"))?);
            }
            Event::GeneralRef(r) => text.push_str(&resolve_ref(&r)?),
            Event::End(_) => {
                let field = match path.iter().skip(3).map(String::as_str).collect::<Vec<_>>()[..] {
                    ["request", "DesignatedBodyCode"] => Some(&mut call.designated_body_code),
                    ["request", "ClientRequestID"] => Some(&mut call.client_request_id),
                    ["Username"] => Some(&mut call.username),
                    ["Password"] => Some(&mut call.password),
                    _ => None,
                };
                if let Some(f) = field {
                    *f = text.trim().to_owned();
                }
                text.clear();
                path.pop();
                if path.len() == 1 {
                    in_body = false;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let version = version.ok_or("the message has no SOAP Envelope")?;
    if call.operation.is_empty() {
        return Err("the SOAP Body holds no operation".into());
    }
    Ok((version, call))
}

/// The text of a character or predefined entity reference; any other is refused.
fn resolve_ref(r: &BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| format!("entity &{name}; is not allowed"))
}

/// Escapes text for an XML element.
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

fn envelope(version: Version, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body>{body}</soap:Body></soap:Envelope>",
        version.ns()
    )
}

/// The `GetDoctorsForDBResponse` envelope.
pub fn response(
    version: Version,
    doctors: &[Doctor],
    client_request_id: &str,
    gmc_request_id: &str,
    return_code: &str,
) -> String {
    let mut list = String::with_capacity(doctors.len() * 600);
    for d in doctors {
        list.push_str("<GetDoctorsForDBResponse_Doctor>");
        for (name, value) in [
            ("GMCReferenceNumber", &d.gmc_reference_number),
            ("DoctorFirstName", &d.first_name),
            ("DoctorLastName", &d.last_name),
            ("SubmissionDate", &d.submission_date),
            ("DoctorStatus", &d.doctor_status),
            ("Breach", &d.breach),
            ("DateAdded", &d.date_added),
            ("UnderNotice", &d.under_notice),
            ("Investigation", &d.investigation),
            ("PreliminaryInvestigation", &d.preliminary_investigation),
            ("Sanction", &d.sanction),
        ] {
            list.push_str(&format!("<{name}>{}</{name}>", esc(value)));
        }
        list.push_str("</GetDoctorsForDBResponse_Doctor>");
    }
    envelope(
        version,
        &format!(
            "<GetDoctorsForDBResponse xmlns=\"{TNS}\"><GetDoctorsForDBResult>\
             <Doctors>{list}</Doctors><ClientRequestID>{}</ClientRequestID>\
             <GMCRequestID>{}</GMCRequestID><ReturnCode>{}</ReturnCode>\
             </GetDoctorsForDBResult></GetDoctorsForDBResponse>",
            esc(client_request_id),
            esc(gmc_request_id),
            esc(return_code)
        ),
    )
}

/// A SOAP fault; `client` says the caller is at fault (else the server). The shapes
/// are the W3C ones (SOAP 1.1 section 4.4: `faultcode` Client/Server and
/// `faultstring`; SOAP 1.2 Part 1 section 5.4: Code Sender/Receiver and Reason). The
/// WSDL declares no fault message and the reference (gmc.md) describes none, so when
/// GMC faults rather than answering a ReturnCode, and with what text, is a guess.
pub fn fault(version: Version, client: bool, reason: &str) -> String {
    let body = match version {
        Version::Soap11 => format!(
            "<soap:Fault><faultcode>soap:{}</faultcode><faultstring>{}</faultstring></soap:Fault>",
            if client { "Client" } else { "Server" },
            esc(reason)
        ),
        Version::Soap12 => format!(
            "<soap:Fault><soap:Code><soap:Value>soap:{}</soap:Value></soap:Code>\
             <soap:Reason><soap:Text xml:lang=\"en\">{}</soap:Text></soap:Reason></soap:Fault>",
            if client { "Sender" } else { "Receiver" },
            esc(reason)
        ),
    };
    envelope(version, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:g="https://webcache.gmc-uk.org/GMCWebServices/">
 <s:Body><g:GetDoctorsForDB>
  <g:request><g:DesignatedBodyCode>1-AIIDHJ</g:DesignatedBodyCode><g:ClientRequestID>r1</g:ClientRequestID></g:request>
  <g:Username>u</g:Username><g:Password>p&amp;q</g:Password>
 </g:GetDoctorsForDB></s:Body></s:Envelope>"#;

    #[test]
    fn a_soap11_call_is_read_by_namespace_not_prefix() {
        let (v, c) = parse_call(CALL.as_bytes()).unwrap();
        assert_eq!(v, Version::Soap11);
        assert_eq!(c.operation, "GetDoctorsForDB");
        assert_eq!(c.designated_body_code, "1-AIIDHJ");
        assert_eq!(c.client_request_id, "r1");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p&q"));
    }

    #[test]
    fn a_doctype_is_refused() {
        let evil = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"boom\">]>{}",
            &CALL[CALL.find("<s:Envelope").unwrap()..]
        );
        let err = parse_call(evil.as_bytes()).unwrap_err();
        assert!(err.contains("DOCTYPE"), "{err}");
    }

    #[test]
    fn a_non_soap_root_is_refused_with_its_name() {
        let err = parse_call(b"<a/>").unwrap_err();
        assert!(
            err.contains("no SOAP Envelope") || err.contains("not a SOAP"),
            "{err}"
        );
    }
}
