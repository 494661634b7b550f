//! Salesforce's error shapes: the REST `[{"message","errorCode","fields"}]` array, the
//! per-record `{"statusCode","message","fields"}` of collections, and the record-level
//! error every write path shares.
//!
//! Sources: the shapes and HTTP statuses follow the REST API Developer Guide, "Status
//! Codes and Error Responses"
//! (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm);
//! the codes are Salesforce's StatusCode and ExceptionCode values (SOAP API Developer
//! Guide, "Core Data Types Used in API Calls": the full lists are in the org's WSDL,
//! https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_concepts_core_data_objects.htm).
//! Salesforce does not document its messages' wording: the emulator's messages copy
//! what real orgs answer as users quote them, which is a guess wherever we have not
//! seen it quoted.

use axum::http::StatusCode;
use serde_json::{json, Value};

/// One record's failure (a validation error, a lock, a missing parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Salesforce status code, e.g. `REQUIRED_FIELD_MISSING`.
    pub code: String,
    /// Human message as Salesforce words it.
    pub message: String,
    /// Fields concerned.
    pub fields: Vec<String>,
    /// The error makes the whole request malformed (an unknown field: Salesforce fails
    /// the JSON deserialization of the request, not one record).
    pub request_level: bool,
    /// `duplicateResult` of a `DUPLICATES_DETECTED` error (the rule and the records
    /// it matched).
    pub duplicate_result: Option<Value>,
}

impl RecordError {
    /// A record error with no fields.
    pub fn new(code: &str, message: impl Into<String>) -> RecordError {
        RecordError {
            code: code.to_owned(),
            message: message.into(),
            fields: Vec::new(),
            request_level: false,
            duplicate_result: None,
        }
    }

    /// Adds the field names concerned.
    pub fn on(mut self, fields: &[&str]) -> RecordError {
        self.fields = fields.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    /// Marks the error as failing the whole request.
    pub fn whole_request(mut self) -> RecordError {
        self.request_level = true;
        self
    }

    /// The REST shape (`errorCode`).
    pub fn rest_json(&self) -> Value {
        self.with_duplicates(
            json!({"message": self.message, "errorCode": self.code, "fields": self.fields}),
        )
    }

    /// The collections shape (`statusCode`).
    pub fn collection_json(&self) -> Value {
        self.with_duplicates(
            json!({"statusCode": self.code, "message": self.message, "fields": self.fields}),
        )
    }

    /// A `DUPLICATES_DETECTED` error carries its `duplicateResult` next to the
    /// code and message in both shapes (the SOAP API's DuplicateError extends Error
    /// with it: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_objects_duplicateresult.htm).
    fn with_duplicates(&self, mut v: Value) -> Value {
        if let (Some(d), Value::Object(m)) = (&self.duplicate_result, &mut v) {
            m.insert("duplicateResult".into(), d.clone());
        }
        v
    }

    /// The HTTP status Salesforce answers this error with on a single-record call.
    pub fn http_status(&self) -> StatusCode {
        match self.code.as_str() {
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "REQUEST_LIMIT_EXCEEDED" => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A whole-request error: HTTP status plus the REST error array.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `errorCode`.
    pub code: String,
    /// `message`.
    pub message: String,
}

impl ApiError {
    /// An error with status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 400 with the given code.
    pub fn bad(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `NOT_FOUND` as Salesforce words it for an unknown resource (the example of
    /// "Status Codes and Error Responses").
    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    }

    /// 404 `NOT_FOUND` for `/sobjects/{O}/{field}/{value}` when `field` is neither an
    /// External ID nor idLookup: the REST API Developer Guide, "Insert or Update
    /// (Upsert) a Record Using an External ID", keys an upsert by an external id
    /// field (idLookup fields qualify); the message is the one a real org gives (it
    /// names the field as the URL spells it: e.g. restforce/restforce#376).
    pub fn not_an_external_id(field: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        )
    }

    /// 400 `JSON_PARSER_ERROR` for a body that is not the JSON expected.
    pub fn json(why: impl std::fmt::Display) -> ApiError {
        ApiError::bad("JSON_PARSER_ERROR", format!("{why}"))
    }

    /// 400 `INVALID_TYPE` for an object the org does not have.
    pub fn invalid_type(object: &str) -> ApiError {
        ApiError::bad(
            "INVALID_TYPE",
            format!(
                "sObject type '{object}' is not supported. If you are attempting to use a custom \
                 object, be sure to append the '__c' after the entity name. Please reference \
                 your WSDL or the describe call for the appropriate names."
            ),
        )
    }

    /// The REST body: a one-element error array.
    pub fn body(&self) -> Value {
        json!([{"message": self.message, "errorCode": self.code}])
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> ApiError {
        ApiError::new(e.http_status(), &e.code, e.message)
    }
}

/// `INVALID_FIELD` for a field the object does not have, in describe's words.
pub fn no_such_column(field: &str, object: &str) -> RecordError {
    RecordError::new(
        "INVALID_FIELD",
        format!("No such column '{field}' on sobject of type {object}"),
    )
    .whole_request()
}

/// `UNABLE_TO_LOCK_ROW` on a parent another transaction holds (the wording real orgs
/// answer, as users quote it: "unable to obtain exclusive access to this record").
pub fn unable_to_lock(parent_id: &str) -> RecordError {
    RecordError::new(
        "UNABLE_TO_LOCK_ROW",
        format!("unable to obtain exclusive access to this record or 1 records: {parent_id}"),
    )
}

/// `PROCESSING_HALTED` for a casualty of a sibling's failure in an atomic unit (the
/// status the Composite Graph Limits page names; the message is ours: a guess).
pub fn processing_halted(message: &str) -> Value {
    json!([{"errorCode": "PROCESSING_HALTED", "message": message}])
}
