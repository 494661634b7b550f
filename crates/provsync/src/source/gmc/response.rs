//! Reads a `GetDoctorsForDBResponse` envelope as it arrives, chunk by chunk, with a
//! namespace-aware reader that refuses DTDs and entities: the raw answer is never
//! held whole, only the doctors read so far.

use std::sync::Arc;

use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use tokio::io::AsyncBufRead;

const TNS: &[u8] = b"https://webcache.gmc-uk.org/GMCWebServices/";

/// The fields of a `GetDoctorsForDBResponse_Doctor`, as `FullGMCConnect.wsdl`
/// lists them; other elements of a doctor are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `GMCReferenceNumber`.
    GmcReferenceNumber,
    /// `DoctorFirstName`.
    DoctorFirstName,
    /// `DoctorLastName`.
    DoctorLastName,
    /// `SubmissionDate`.
    SubmissionDate,
    /// `DoctorStatus`.
    DoctorStatus,
    /// `Breach`.
    Breach,
    /// `DateAdded`.
    DateAdded,
    /// `UnderNotice`.
    UnderNotice,
    /// `Investigation`.
    Investigation,
    /// `PreliminaryInvestigation`.
    PreliminaryInvestigation,
    /// `Sanction`.
    Sanction,
}

impl Field {
    const ALL: [Field; 11] = [
        Field::GmcReferenceNumber,
        Field::DoctorFirstName,
        Field::DoctorLastName,
        Field::SubmissionDate,
        Field::DoctorStatus,
        Field::Breach,
        Field::DateAdded,
        Field::UnderNotice,
        Field::Investigation,
        Field::PreliminaryInvestigation,
        Field::Sanction,
    ];

    /// The element's name.
    pub fn name(self) -> &'static str {
        match self {
            Field::GmcReferenceNumber => "GMCReferenceNumber",
            Field::DoctorFirstName => "DoctorFirstName",
            Field::DoctorLastName => "DoctorLastName",
            Field::SubmissionDate => "SubmissionDate",
            Field::DoctorStatus => "DoctorStatus",
            Field::Breach => "Breach",
            Field::DateAdded => "DateAdded",
            Field::UnderNotice => "UnderNotice",
            Field::Investigation => "Investigation",
            Field::PreliminaryInvestigation => "PreliminaryInvestigation",
            Field::Sanction => "Sanction",
        }
    }

    fn of(local: &[u8]) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| f.name().as_bytes() == local)
    }
}

/// One doctor element, its known fields as sent (trimmed). A body may list tens of
/// thousands of doctors, all held until the body's answer is complete, so a doctor
/// is one string and the fields' places in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDoctor {
    /// 1-based position in the list (for error entries).
    pub position: usize,
    /// The fields' texts, one after another.
    text: String,
    /// Where each field's text lies in `text` (by `Field` order), when it was sent.
    spans: [Option<(u32, u32)>; Field::ALL.len()],
}

impl RawDoctor {
    /// An empty doctor at this position.
    pub fn new(position: usize) -> Self {
        Self {
            position,
            ..Self::default()
        }
    }

    /// A field's text, when present.
    pub fn get(&self, field: Field) -> Option<&str> {
        let (start, end) = self.spans[field as usize]?;
        self.text.get(start as usize..end as usize)
    }

    /// Sets a field's text (a field sent twice keeps its first text), or says why not.
    pub fn set(&mut self, field: Field, value: &str) -> Result<(), String> {
        if self.spans[field as usize].is_some() {
            return Ok(());
        }
        let start = self.text.len();
        let end = u32::try_from(start + value.len())
            .map_err(|_| format!("doctor #{}: its fields exceed 4 GiB", self.position))?;
        self.text.push_str(value);
        self.spans[field as usize] = Some((start as u32, end));
        Ok(())
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

impl Response {
    /// A fingerprint of the doctors listed (every field, in order): two answers of a
    /// body with the same fingerprint list the same doctors in the same order.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for d in &self.doctors {
            h.update((d.text.len() as u64).to_le_bytes());
            h.update(d.text.as_bytes());
            for span in &d.spans {
                match span {
                    Some((start, end)) => {
                        h.update([1]);
                        h.update(start.to_le_bytes());
                        h.update(end.to_le_bytes());
                    }
                    None => h.update([0]),
                }
            }
        }
        let sum = h.finalize();
        let mut head = [0u8; 8];
        head.copy_from_slice(&sum[..8]);
        format!("{:016x}", u64::from_be_bytes(head))
    }
}

/// Why a response could not be read.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The answer's bytes stopped coming: the reader's own error (transport, a cap).
    #[error("reading the answer: {0}")]
    Read(Arc<std::io::Error>),
}

/// Parses a response body as its bytes arrive.
pub async fn parse(body: impl AsyncBufRead + Unpin) -> Result<Response, ParseError> {
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
        let malformed = |why: String| ParseError::Malformed { at, why };
        let (ns, event) = match reader.read_resolved_event_into_async(&mut buf).await {
            Ok(read) => read,
            Err(quick_xml::Error::Io(e)) => return Err(ParseError::Read(e)),
            Err(e) => return Err(malformed(e.to_string())),
        };
        let in_tns = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == TNS);
        match event {
            Event::DocType(_) => return Err(ParseError::Doctype),
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if in_tns && local == "GetDoctorsForDBResponse_Doctor" {
                    current = Some(RawDoctor::new(out.doctors.len() + 1));
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
                let piece = t
                    .decode()
                    .map_err(|e| malformed(format!("undecodable text: {e}")))?;
                text.push_str(&piece);
            }
            Event::CData(t) => {
                let piece = t
                    .decode()
                    .map_err(|e| malformed(format!("undecodable CDATA: {e}")))?;
                text.push_str(&piece);
            }
            Event::GeneralRef(r) => {
                text.push_str(&resolve_ref(&r).map_err(malformed)?);
            }
            Event::End(e) => {
                let name = path.pop().unwrap_or_default();
                let value = text.trim();
                if e.local_name().as_ref() == b"GetDoctorsForDBResponse_Doctor" {
                    if let Some(mut d) = current.take() {
                        d.text.shrink_to_fit();
                        out.doctors.push(d);
                    }
                } else if let Some(d) = current.as_mut() {
                    if let Some(field) = Field::of(name.as_bytes()) {
                        d.set(field, value).map_err(malformed)?;
                    }
                } else if let Some(f) = out.fault.as_mut() {
                    if name == "faultstring" || name == "Text" {
                        f.push_str(value);
                    }
                } else if in_tns && name == "ReturnCode" {
                    out.return_code = value.to_owned();
                } else if in_tns && name == "GMCRequestID" {
                    out.gmc_request_id = value.to_owned();
                }
                text.clear();
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

    /// Parses an answer that arrives whole.
    async fn parse_whole(answer: &str) -> Result<Response, ParseError> {
        parse(answer.as_bytes()).await
    }

    /// Parses an answer that arrives in chunks of `size` bytes.
    async fn parse_in_chunks(answer: &str, size: usize) -> Result<Response, ParseError> {
        let chunks: Vec<std::io::Result<bytes::Bytes>> = answer
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        parse(tokio_util::io::StreamReader::new(futures::stream::iter(
            chunks,
        )))
        .await
    }

    #[tokio::test]
    async fn doctors_and_return_code_are_read() {
        let r = parse_whole(OK).await.unwrap();
        assert_eq!(r.return_code, "0");
        assert!(r.has_list);
        assert_eq!(r.doctors.len(), 1);
        assert_eq!(r.doctors[0].get(Field::GmcReferenceNumber), Some("1234567"));
        assert_eq!(r.doctors[0].get(Field::DoctorLastName), Some("O'Neill"));
        assert_eq!(r.doctors[0].get(Field::DoctorFirstName), None);
    }

    #[tokio::test]
    async fn a_doctype_is_refused() {
        let evil = format!("<!DOCTYPE x [<!ENTITY e \"boom\">]>{}", &OK[38..]);
        let err = parse_whole(&evil).await.unwrap_err();
        assert!(matches!(err, ParseError::Doctype), "{err}");
    }

    #[tokio::test]
    async fn a_truncated_response_is_malformed_not_empty() {
        let err = parse_whole(&OK[..OK.len() / 2]).await.unwrap_err();
        assert!(matches!(err, ParseError::Malformed { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_fault_is_reported_with_its_text() {
        let f = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>bad call</faultstring></soap:Fault></soap:Body></soap:Envelope>"#;
        assert_eq!(
            parse_whole(f).await.unwrap().fault.as_deref(),
            Some("bad call")
        );
    }

    #[tokio::test]
    async fn an_undeclared_entity_is_refused() {
        let x = OK.replace("O&apos;Neill", "&xxe;");
        let err = parse_whole(&x).await.unwrap_err().to_string();
        assert!(err.contains("&xxe;"), "{err}");
    }

    /// Chunk boundaries fall anywhere: inside a tag, a multibyte character, an
    /// entity or character reference, CDATA. The doctors read are the same.
    #[tokio::test]
    async fn an_answer_in_one_byte_chunks_parses_as_the_whole_answer() {
        let doctor = "<GetDoctorsForDBResponse_Doctor><GMCReferenceNumber>7654321</GMCReferenceNumber>\
            <DoctorFirstName>Zo\u{eb} &#x1F600;</DoctorFirstName><DoctorLastName> O&apos;N\u{e9}ill &amp; \u{1F469}\u{200D}\u{2695} </DoctorLastName>\
            <Sanction><![CDATA[a<b]]></Sanction><Unknown>x</Unknown></GetDoctorsForDBResponse_Doctor>";
        let answer = OK.replace("</Doctors>", &format!("{doctor}</Doctors>"));
        let whole = parse_whole(&answer).await.unwrap();
        assert_eq!(whole.doctors.len(), 2);
        let d = &whole.doctors[1];
        assert_eq!(d.position, 2);
        assert_eq!(d.get(Field::DoctorFirstName), Some("Zo\u{eb} \u{1F600}"));
        assert_eq!(
            d.get(Field::DoctorLastName),
            Some("O'N\u{e9}ill & \u{1F469}\u{200D}\u{2695}")
        );
        assert_eq!(d.get(Field::Sanction), Some("a<b"));
        for size in [1, 2, 3, 7, 64] {
            assert_eq!(
                parse_in_chunks(&answer, size).await.unwrap(),
                whole,
                "{size}"
            );
        }
    }

    #[tokio::test]
    async fn a_doctype_in_a_later_chunk_is_refused() {
        let evil = format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY e \"boom\">]>{}",
            &OK[38..]
        );
        for size in [1, 5, 22] {
            let err = parse_in_chunks(&evil, size).await.unwrap_err();
            assert!(matches!(err, ParseError::Doctype), "{size}: {err}");
        }
    }

    #[tokio::test]
    async fn a_failing_reader_is_a_read_error_not_malformed_xml() {
        let chunks = vec![
            Ok(bytes::Bytes::from_static(&OK.as_bytes()[..100])),
            Err(std::io::Error::other("connection reset")),
        ];
        let err = parse(tokio_util::io::StreamReader::new(futures::stream::iter(
            chunks,
        )))
        .await
        .unwrap_err();
        assert!(matches!(err, ParseError::Read(_)), "{err}");
        assert_eq!(err.to_string(), "reading the answer: connection reset");
    }
}
