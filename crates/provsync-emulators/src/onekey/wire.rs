//! The JSON shapes of the emulator's records, codes and errors (see
//! `docs/onekey-contract.md`); packets are written around them by `server`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `statusCode` of a record: `VALID`, or `INVALID` for a record removed from the MDM
/// (only delta packets carry those).
pub const VALID: &str = "VALID";
/// See [`VALID`].
pub const INVALID: &str = "INVALID";

/// An individual (HCP), `WUSM…`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireIndividual {
    /// OneKey id.
    pub individual_eid: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Middle name or initial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Title (`Dr`, `Mr`, `Ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `F` or `M`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender_code: Option<String>,
    /// `yyyy-mm-dd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Specialty codes (`WUS.SP.017`), primary first.
    pub specialty_codes: Vec<String>,
    /// National Provider Identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub npi: Option<String>,
    /// E-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `VALID` or `INVALID`.
    pub status_code: &'static str,
    /// Last modification, RFC 3339.
    pub update_date: String,
}

/// A workplace address, `WUSD…`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAddress {
    /// OneKey address id.
    pub address_eid: String,
    /// Street line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line1: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO country.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A workplace (HCO), `WUSW…`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireWorkplace {
    /// OneKey id.
    pub workplace_eid: String,
    /// Name.
    pub name: String,
    /// Type code as the facility files give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_code: Option<String>,
    /// Parent workplace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_workplace_eid: Option<String>,
    /// Addresses (one, the main one, in this emulator).
    pub addresses: Vec<WireAddress>,
    /// Telephone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// NPI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub npi: Option<String>,
    /// CMS certification number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ccn: Option<String>,
    /// `VALID` or `INVALID`.
    pub status_code: &'static str,
    /// Last modification, RFC 3339.
    pub update_date: String,
}

/// An activity (an individual's role at a workplace), `WUSA…`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireActivity {
    /// OneKey id.
    pub activity_eid: String,
    /// The individual.
    pub individual_eid: String,
    /// The workplace.
    pub workplace_eid: String,
    /// Role code (`WUS.ROL.01`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_code: Option<String>,
    /// Main activity of the individual.
    pub primary: bool,
    /// Telephone at this workplace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// `VALID` or `INVALID`.
    pub status_code: &'static str,
    /// Last modification, RFC 3339.
    pub update_date: String,
}

/// A code of a code list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireCode {
    /// `CODBASE.LIST.CODE`, e.g. `WUS.SP.017`.
    pub code: String,
    /// Labels by locale.
    pub labels: BTreeMap<String, String>,
    /// Still in use.
    pub active: bool,
}

/// A code list of a country.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireCodeList {
    /// List name, e.g. `SP`.
    pub list: String,
    /// What the list holds.
    pub description: String,
    /// Its codes.
    pub codes: Vec<WireCode>,
}

/// The error body of every failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// Stable code, e.g. `SESSION_EXPIRED`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The request, for support.
    pub request_id: String,
}
