//! The Salesforce org emulator through HTTP: the real `provsync emulate salesforce`
//! process, every documented limit answered with Salesforce's error shape (and counted
//! as a violation), auth and token expiry, the Bulk 2.0 state machine, row lock
//! conflicts, Metadata value sets, restart durability, and jsforce as an independent
//! client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

const V: &str = "/services/data/v63.0";

/// A running `provsync emulate salesforce`; killed when dropped.
struct Sf {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    url: String,
    http: reqwest::Client,
    token: String,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/salesforce")
        .join(name)
}

impl Sf {
    async fn start(flags: &[&str]) -> Sf {
        let mut child = Command::new(bin())
            .args(["emulate", "salesforce", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn provsync emulate salesforce");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let mut sf = Sf {
            child,
            _stdout: out,
            url,
            http: reqwest::Client::new(),
            token: String::new(),
        };
        sf.token = sf.client_credentials().await;
        sf
    }

    async fn client_credentials(&self) -> String {
        let r = self
            .http
            .post(format!("{}/services/oauth2/token", self.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "provsync"),
                ("client_secret", "provsync-secret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["instance_url"], json!(self.url));
        assert_eq!(v["token_type"], "Bearer");
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// A REST call with the token; (status, Sforce-Limit-Info, JSON or text body).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, Value) {
        self.call_with(method, path, body, &[]).await
    }

    /// [`Sf::call`] with extra request headers.
    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let limit = r
            .headers()
            .get("sforce-limit-info")
            .map(|h| h.to_str().unwrap().to_owned());
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, limit, body)
    }

    async fn csv(&self, method: Method, path: &str, csv: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn soap(&self, session: &str, body: &str) -> (StatusCode, String) {
        let envelope = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
             xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Header>\
             <SessionHeader xmlns=\"http://soap.sforce.com/2006/04/metadata\"><sessionId>{session}</sessionId>\
             </SessionHeader></soapenv:Header><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
        );
        let r = self
            .http
            .post(format!("{}/services/Soap/m/63.0", self.url))
            .header("content-type", "text/xml")
            .header("soapaction", "\"\"")
            .body(envelope)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/_emulator/{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn stats(&self) -> Value {
        self.control(Method::GET, "stats", None).await
    }

    async fn violations(&self) -> u64 {
        self.stats().await["limit_violations"].as_u64().unwrap()
    }

    async fn upsert_collection(
        &self,
        object: &str,
        records: Vec<Value>,
        all_or_none: bool,
    ) -> (StatusCode, Value) {
        let records: Vec<Value> = records
            .into_iter()
            .map(|mut r| {
                r["attributes"] = json!({"type": object});
                r
            })
            .collect();
        let (s, _, b) = self
            .call(
                Method::PATCH,
                &format!("{V}/composite/sobjects/{object}/OneKey_Id__c"),
                Some(json!({"allOrNone": all_or_none, "records": records})),
            )
            .await;
        (s, b)
    }

    /// Stops with SIGTERM (a clean shutdown writes a snapshot) and waits.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "clean stop: {status}");
    }
}

impl Drop for Sf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn error_code(body: &Value) -> &str {
    body[0]["errorCode"]
        .as_str()
        .unwrap_or_else(|| panic!("no errorCode in {body}"))
}

fn accounts(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"OneKey_Id__c": format!("{prefix}{i}"), "Name": format!("Org {i}")}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_upsert_by_external_id_creates_then_updates_with_limit_header() {
    let sf = Sf::start(&["--api-budget", "500"]).await;
    let path = format!("{V}/sobjects/Account/OneKey_Id__c/WUSW1");
    let (s, limit, b) = sf
        .call(
            Method::PATCH,
            &path,
            Some(json!({"Name": "Hospital A", "Type": "Hospital"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(limit.as_deref(), Some("api-usage=1/500"));
    assert_eq!(b["created"], true);
    let id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("001"));
    let (_, _, before) = sf.call(Method::GET, &path, None).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (s, limit, b) = sf
        .call(
            Method::PATCH,
            &path,
            Some(json!({"Name": "Hospital A", "Type": "Hospital"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(limit.as_deref(), Some("api-usage=3/500"));
    assert_eq!(
        (b["created"].clone(), b["id"].clone()),
        (json!(false), json!(id))
    );
    let (_, _, after) = sf.call(Method::GET, &path, None).await;
    // Salesforce stamps every update, even one that changes no value.
    assert_ne!(before["LastModifiedDate"], after["LastModifiedDate"]);
    assert_eq!(after["CreatedDate"], before["CreatedDate"]);
    // A person account: Name computed, IsPersonAccount set; parent by external id.
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/sobjects/Account/OneKey_Id__c/WUSM1"),
            Some(json!({"FirstName": "Ada", "LastName": "Byron", "Parent": {"OneKey_Id__c": "WUSW1"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, _, m) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/Account/{}", b["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (
            m["Name"].clone(),
            m["IsPersonAccount"].clone(),
            m["ParentId"].clone()
        ),
        (json!("Ada Byron"), json!(true), json!(id))
    );
    // The versions list carries no limit header and costs nothing.
    let r = sf
        .http
        .get(format!("{}/services/data/", sf.url))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("sforce-limit-info").is_none());
    let versions: Value = r.json().await.unwrap();
    assert!(versions
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["version"] == "63.0"));
    let (_, _, limits) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    // Seven calls so far, this one included.
    assert_eq!(
        limits["DailyApiRequests"],
        json!({"Max": 500, "Remaining": 493})
    );
    let (s, _, d) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/HealthcareProvider/describe"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let key = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "OneKey_Id__c")
        .unwrap();
    assert_eq!(
        (key["externalId"].clone(), key["unique"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(sf.violations().await, 0);
}

/// IntegrationJobRun's JobIdentifier is a plain string (Life Sciences Cloud object
/// reference): an upsert keyed by it is refused as a real org refuses it; the
/// record is created, found by SOQL on JobIdentifier and updated by its Id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_upsert_by_a_field_neither_external_id_nor_id_lookup_is_refused_not_found() {
    let sf = Sf::start(&[]).await;
    let v65 = "/services/data/v65.0";
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{v65}/sobjects/IntegrationJobRun/JobIdentifier/J1"),
            Some(json!({"JobName": "provsync provider-sync full"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(error_code(&b), "NOT_FOUND");
    assert_eq!(
        b[0]["message"],
        "Provided external ID field does not exist or is not accessible: JobIdentifier"
    );
    let (_, _, d) = sf
        .call(
            Method::GET,
            &format!("{v65}/sobjects/IntegrationJobRun/describe"),
            None,
        )
        .await;
    let field = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "JobIdentifier")
        .cloned()
        .unwrap();
    assert_eq!(
        (field["externalId"].clone(), field["idLookup"].clone()),
        (json!(false), json!(false)),
        "{field}"
    );
    let (s, _, b) = sf
        .call(
            Method::POST,
            &format!("{v65}/sobjects/IntegrationJobRun"),
            Some(
                json!({"JobName": "provsync provider-sync full", "JobIdentifier": "J1",
                        "StartDateTime": "2026-01-02T03:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (s, _, q) = sf
        .call(
            Method::GET,
            &format!(
                "{v65}/query?q=SELECT+Id+FROM+IntegrationJobRun+WHERE+JobIdentifier+%3D+%27J1%27"
            ),
            None,
        )
        .await;
    assert_eq!(
        (s, q["records"][0]["Id"].clone()),
        (StatusCode::OK, json!(id)),
        "{q}"
    );
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{v65}/sobjects/IntegrationJobRun/{id}"),
            Some(json!({"EndDateTime": "2026-01-02T03:04:05Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(sf.violations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_field_validation_answers_salesforce_errors() {
    let sf = Sf::start(&[]).await;
    let up = |o: &str, k: &str| format!("{V}/sobjects/{o}/OneKey_Id__c/{k}");
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &up("Account", "A1"),
            Some(json!({"Name": "A", "Nope__c": 1})),
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "INVALID_FIELD")
    );
    assert_eq!(
        b[0]["message"],
        "No such column 'Nope__c' on sobject of type Account"
    );
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &up("Nothing__c", "A1"),
            Some(json!({"Name": "A"})),
        )
        .await;
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &up("Account", "A1"),
            Some(json!({"Name": "x".repeat(256)})),
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "STRING_TOO_LONG")
    );
    assert!(
        b[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("(max length=255)"),
        "{b}"
    );
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &up("HealthcareProvider", "H1"),
            Some(json!({"IsActive": true})),
        )
        .await;
    assert_eq!(error_code(&b), "REQUIRED_FIELD_MISSING");
    assert_eq!(b[0]["message"], "Required fields are missing: [Name]");
    assert_eq!(b[0]["fields"], json!(["Name"]));
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &up("HealthcareProvider", "H1"),
            Some(json!({"Name": "N", "Account": {"OneKey_Id__c": "WX"}})),
        )
        .await;
    assert_eq!(error_code(&b), "INVALID_FIELD");
    assert_eq!(
        b[0]["message"],
        "Foreign key external ID: WX not found for field OneKey_Id__c in entity Account"
    );
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &up("HealthcarePractitionerFacility", "F1"),
            Some(json!({"Role__c": "Chief"})),
        )
        .await;
    assert_eq!(error_code(&b), "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &up("Account", "A1"),
            Some(json!({"Name": "A", "Active__c": "maybe"})),
        )
        .await;
    assert_eq!(error_code(&b), "JSON_PARSER_ERROR");
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &up("Account", "A1"),
            Some(json!({"Name": "A", "IsPersonAccount": true})),
        )
        .await;
    assert_eq!(error_code(&b), "INVALID_FIELD_FOR_INSERT_UPDATE");
    // Path segments are percent-decoded once; the body may not contradict the URL's key.
    let (s, _, _) = sf
        .call(
            Method::PATCH,
            &format!("{V}/sobjects/Account/OneKey_Id__c/W%20X%25"),
            Some(json!({"Name": "w"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, _, q) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Id+FROM+Account+WHERE+OneKey_Id__c+%3D+'W+X%25'"),
            None,
        )
        .await;
    assert_eq!(q["totalSize"], 1, "{q}");
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &up("Account", "A2"),
            Some(json!({"Name": "a", "OneKey_Id__c": "OTHER"})),
        )
        .await;
    assert_eq!(error_code(&b), "INVALID_FIELD");
    // ProviderAffiliation exists from v65.0 only.
    let (s, _, _) = sf
        .call(
            Method::PATCH,
            "/services/data/v64.0/sobjects/ProviderAffiliation/OneKey_Id__c/P1",
            Some(json!({"Name": "p"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    sf.call(
        Method::PATCH,
        &up("Account", "PA"),
        Some(json!({"Name": "PA"})),
    )
    .await;
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            "/services/data/v65.0/sobjects/ProviderAffiliation/OneKey_Id__c/P1",
            Some(json!({"Name": "p", "Account": {"OneKey_Id__c": "PA"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Data errors are not limit violations.
    assert_eq!(sf.violations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_collections_enforce_200_records_one_type_duplicates_and_all_or_none() {
    let sf = Sf::start(&[]).await;
    let (s, b) = sf
        .upsert_collection("Account", accounts("C", 201), false)
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT")
    );
    assert_eq!(sf.violations().await, 1);
    let (s, b) = sf
        .upsert_collection("Account", accounts("C", 200), false)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["success"] == true && r["created"] == true));
    let mixed = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Account"}, "OneKey_Id__c": "M1", "Name": "a"},
        {"attributes": {"type": "CareSpecialty"}, "OneKey_Id__c": "M2", "Name": "b"}]});
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/composite/sobjects/Account/OneKey_Id__c"),
            Some(mixed),
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "INVALID_TYPE")
    );
    assert_eq!(sf.violations().await, 2);
    let dup = vec![
        json!({"OneKey_Id__c": "D1", "Name": "one"}),
        json!({"OneKey_Id__c": "D1", "Name": "two"}),
        json!({"OneKey_Id__c": "D2", "Name": "fine"}),
    ];
    let (_, b) = sf.upsert_collection("Account", dup, false).await;
    assert_eq!(b[0]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(b[1]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(b[2]["success"], true);
    let all_or_none = vec![
        json!({"OneKey_Id__c": "R1", "Name": "good"}),
        json!({"OneKey_Id__c": "R2", "Name": "x".repeat(300)}),
    ];
    let (_, b) = sf.upsert_collection("Account", all_or_none, true).await;
    assert_eq!(
        b[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(b[1]["errors"][0]["statusCode"], "STRING_TOO_LONG");
    let (s, _, _) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/Account/OneKey_Id__c/R1"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "rolled back");
    let (s, b) = sf
        .upsert_collection(
            "Account",
            vec![json!({"OneKey_Id__c": "U1", "Name": "a", "Bogus": 1})],
            false,
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "INVALID_FIELD")
    );
    let stats = sf.stats().await;
    assert_eq!(stats["largest_request"]["records"], 201);
    assert_eq!(stats["violations"][0]["limit"], "collections_records");
}

fn node(r: &str, method: &str, url: &str, body: Value) -> Value {
    json!({"method": method, "url": url, "referenceId": r, "body": body})
}

fn account_graph(id: &str, key: &str, ok: bool) -> Value {
    let child = if ok {
        json!({"Name": "Dr", "AccountId": "@{acc.id}"})
    } else {
        json!({"AccountId": "@{acc.id}"})
    };
    json!({"graphId": id, "compositeRequest": [
        node("acc", "PATCH", &format!("{V}/sobjects/Account/OneKey_Id__c/{key}"), json!({"Name": key})),
        node("hcp", "PATCH", &format!("{V}/sobjects/HealthcareProvider/OneKey_Id__c/H{key}"), child),
    ]})
}

/// REST API Developer Guide, "Composite Graph Limits"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_graph_limits.htm):
/// "if the number of graph failures exceeds the maximum limit of 14, processing is
/// halted for the remaining graphs in the request. The response includes errors for
/// the failed graphs, and the status for the remaining graphs is shown as
/// PROCESSING_HALTED."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_graphs_after_failures_exceed_14_are_processing_halted() {
    let sf = Sf::start(&[]).await;
    let path = format!("{V}/composite/graph");
    let code = |b: &Value, g: usize| {
        b["graphs"][g]["graphResponse"]["compositeResponse"][1]["body"][0]["errorCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // 14 failures do not exceed the limit: a good graph after them is processed.
    let mut graphs: Vec<Value> = (0..14)
        .map(|i| account_graph(&format!("a{i}"), &format!("A{i}"), false))
        .collect();
    graphs.push(account_graph("a14", "A14", true));
    let (s, _, b) = sf
        .call(Method::POST, &path, Some(json!({ "graphs": graphs })))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["graphs"][14]["isSuccessful"], true, "{b}");
    // The 15th failure exceeds it: that graph carries its own error, the rest halt.
    let graphs: Vec<Value> = (0..15)
        .map(|i| account_graph(&format!("f{i}"), &format!("F{i}"), false))
        .chain((15..20).map(|i| account_graph(&format!("f{i}"), &format!("F{i}"), true)))
        .collect();
    let (_, _, b) = sf
        .call(Method::POST, &path, Some(json!({ "graphs": graphs })))
        .await;
    assert_eq!(code(&b, 14), "REQUIRED_FIELD_MISSING", "{b}");
    for g in 15..20 {
        assert_eq!(b["graphs"][g]["isSuccessful"], false, "{b}");
        let nodes = b["graphs"][g]["graphResponse"]["compositeResponse"]
            .as_array()
            .unwrap();
        assert!(
            nodes
                .iter()
                .all(|n| n["body"][0]["errorCode"] == "PROCESSING_HALTED"),
            "{b}"
        );
    }
    let (s, _, _) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/Account/OneKey_Id__c/F15"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a halted graph wrote nothing");
    let stats = sf.stats().await;
    assert_eq!(
        stats["graphs"],
        json!({"sent": 35, "failed": 29, "halted": 5}),
        "{stats}"
    );
    assert_eq!(sf.violations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_graphs_are_atomic_and_limited() {
    let sf = Sf::start(&[]).await;
    let graph = |graphs: Vec<Value>| json!({"graphs": graphs});
    let path = format!("{V}/composite/graph");
    let (s, _, b) = sf
        .call(
            Method::POST,
            &path,
            Some(graph(vec![
                account_graph("g1", "G1", true),
                account_graph("g2", "G2", false),
            ])),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let g = &b["graphs"];
    assert_eq!(
        (g[0]["isSuccessful"].clone(), g[1]["isSuccessful"].clone()),
        (json!(true), json!(false))
    );
    let failed = &g[1]["graphResponse"]["compositeResponse"];
    assert_eq!(failed[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(failed[1]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING");
    let (s, _, _) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/Account/OneKey_Id__c/G2"),
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the failed graph's account was rolled back"
    );
    let (s, _, _) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/HealthcareProvider/OneKey_Id__c/HG1"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sf.violations().await, 0);
    // 76 graphs; 501 nodes; 16 node kinds; depth 16: each refused and counted.
    let many: Vec<Value> = (0..76)
        .map(|i| account_graph(&format!("m{i}"), &format!("M{i}"), true))
        .collect();
    let (s, _, b) = sf.call(Method::POST, &path, Some(graph(many))).await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "LIMIT_EXCEEDED")
    );
    let nodes: Vec<Value> = (0..501)
        .map(|i| {
            node(
                &format!("n{i}"),
                "PATCH",
                &format!("{V}/sobjects/Account/OneKey_Id__c/N{i}"),
                json!({"Name": "n"}),
            )
        })
        .collect();
    let (s, _, _) = sf
        .call(
            Method::POST,
            &path,
            Some(graph(vec![
                json!({"graphId": "big", "compositeRequest": nodes}),
            ])),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let kinds: Vec<Value> = (0..16)
        .map(|i| {
            node(
                &format!("k{i}"),
                "PATCH",
                &format!(
                    "/services/data/v{}.0/sobjects/Account/OneKey_Id__c/K{i}",
                    50 + i
                ),
                json!({"Name": "k"}),
            )
        })
        .collect();
    let (s, _, _) = sf
        .call(
            Method::POST,
            &path,
            Some(graph(vec![
                json!({"graphId": "kinds", "compositeRequest": kinds}),
            ])),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let chain: Vec<Value> = (0..16)
        .map(|i| {
            let body = if i == 0 {
                json!({"Name": "c"})
            } else {
                json!({"Name": "c", "ParentId": format!("@{{c{}.id}}", i - 1)})
            };
            node(
                &format!("c{i}"),
                "PATCH",
                &format!("{V}/sobjects/Account/OneKey_Id__c/C{i}"),
                body,
            )
        })
        .collect();
    let (s, _, _) = sf
        .call(
            Method::POST,
            &path,
            Some(graph(vec![
                json!({"graphId": "deep", "compositeRequest": chain}),
            ])),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let stats = sf.stats().await;
    assert_eq!(stats["limit_violations"], 4);
    let limits: Vec<&str> = stats["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["limit"].as_str().unwrap())
        .collect();
    assert_eq!(
        limits,
        [
            "graph_count",
            "graph_nodes",
            "graph_node_kinds",
            "graph_depth"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_composite_references_all_or_none_and_limits() {
    let sf = Sf::start(&[]).await;
    let path = format!("{V}/composite");
    let req = json!({"allOrNone": true, "compositeRequest": [
        node("acc", "PATCH", &format!("{V}/sobjects/Account/OneKey_Id__c/CP1"), json!({"Name": "Clinic"})),
        node("addr", "POST", &format!("{V}/sobjects/ContactPointAddress"), json!({"ParentId": "@{acc.id}", "Name": "Leeds", "City": "Leeds"})),
        node("q", "GET", &format!("{V}/query?q=SELECT+Id+FROM+Account+WHERE+OneKey_Id__c='CP1'"), Value::Null),
    ]});
    let (s, _, b) = sf.call(Method::POST, &path, Some(req)).await;
    assert_eq!(s, StatusCode::OK);
    let items = b["compositeResponse"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| i["httpStatusCode"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [201, 201, 200]
    );
    assert_eq!(items[2]["body"]["records"][0]["Id"], items[0]["body"]["id"]);
    let req = json!({"allOrNone": true, "compositeRequest": [
        node("acc", "PATCH", &format!("{V}/sobjects/Account/OneKey_Id__c/CP2"), json!({"Name": "Clinic 2"})),
        node("bad", "PATCH", &format!("{V}/sobjects/HealthcareProvider/OneKey_Id__c/CPH"), json!({"AccountId": "@{acc.id}"})),
    ]});
    let (_, _, b) = sf.call(Method::POST, &path, Some(req)).await;
    assert_eq!(
        b["compositeResponse"][0]["body"][0]["errorCode"],
        "PROCESSING_HALTED"
    );
    assert_eq!(
        b["compositeResponse"][1]["body"][0]["errorCode"],
        "REQUIRED_FIELD_MISSING"
    );
    let (s, _, _) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/Account/OneKey_Id__c/CP2"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(sf.violations().await, 0);
    let subs: Vec<Value> = (0..26)
        .map(|i| {
            node(
                &format!("s{i}"),
                "PATCH",
                &format!("{V}/sobjects/Account/OneKey_Id__c/S{i}"),
                json!({"Name": "s"}),
            )
        })
        .collect();
    let (s, _, b) = sf
        .call(Method::POST, &path, Some(json!({"compositeRequest": subs})))
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "LIMIT_EXCEEDED")
    );
    let queries: Vec<Value> = (0..6)
        .map(|i| {
            node(
                &format!("q{i}"),
                "GET",
                &format!("{V}/query?q=SELECT+Id+FROM+Account"),
                Value::Null,
            )
        })
        .collect();
    let (s, _, _) = sf
        .call(
            Method::POST,
            &path,
            Some(json!({"compositeRequest": queries})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(sf.violations().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_query_pages_by_2000_and_refuses_what_it_does_not_parse() {
    let sf = Sf::start(&[]).await;
    for chunk in 0..13 {
        let (s, _) = sf
            .upsert_collection("Account", accounts(&format!("Q{chunk}-"), 200), false)
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Id,+OneKey_Id__c+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (b["totalSize"].clone(), b["done"].clone()),
        (json!(2600), json!(false))
    );
    assert_eq!(b["records"].as_array().unwrap().len(), 2000);
    let next = b["nextRecordsUrl"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with(&format!("{V}/query/01g")) && next.ends_with("-2000"),
        "{next}"
    );
    let (_, _, b) = sf.call(Method::GET, &next, None).await;
    assert_eq!(
        (b["done"].clone(), b["records"].as_array().unwrap().len()),
        (json!(true), 600)
    );
    let (_, _, b) = sf
        .call(Method::GET, &format!("{V}/query?q=SELECT+COUNT()+FROM+Account+WHERE+OneKey_Id__c+IN+('Q0-1','Q0-2','none')"), None)
        .await;
    assert_eq!(b["totalSize"], 2);
    let (_, _, b) = sf
        .call(Method::GET, &format!("{V}/query?q=SELECT+Name+FROM+Account+WHERE+Name+!%3D+null+ORDER+BY+OneKey_Id__c+DESC+LIMIT+1"), None)
        .await;
    assert_eq!(b["records"][0]["Name"], "Org 99");
    let (s, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Id+FROM+Account+WHERE+Name='a'+OR+Name='b'"),
            None,
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "MALFORMED_QUERY")
    );
    let (_, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Nope+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(error_code(&b), "INVALID_FIELD");
    let (_, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Id+FROM+Nope"),
            None,
        )
        .await;
    assert_eq!(error_code(&b), "INVALID_TYPE");
    assert_eq!(sf.violations().await, 0);
    let ids: Vec<String> = (0..1500).map(|i| format!("'K{i:08}'")).collect();
    let long = format!(
        "{V}/query?q=SELECT+Id+FROM+Account+WHERE+OneKey_Id__c+IN+({})",
        ids.join(",")
    );
    assert!(long.len() > 16_384);
    let (s, _, _) = sf.call(Method::GET, &long, None).await;
    assert_eq!(s, StatusCode::URI_TOO_LONG);
    assert_eq!(sf.violations().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_daily_budget_refuses_calls_until_the_window_rolls_or_a_reset() {
    let sf = Sf::start(&["--api-budget", "3", "--budget-window-secs", "3"]).await;
    for used in 1..=3 {
        let (s, limit, _) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(limit.unwrap(), format!("api-usage={used}/3"));
    }
    let (s, limit, b) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        b,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert_eq!(limit.unwrap(), "api-usage=3/3");
    assert_eq!(sf.violations().await, 1);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (s, _, _) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(s, StatusCode::OK, "the rolling window forgot the old calls");
    sf.call(Method::GET, &format!("{V}/limits"), None).await;
    sf.call(Method::GET, &format!("{V}/limits"), None).await;
    let (s, _, _) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    sf.control(Method::POST, "reset-budget", None).await;
    let (s, _, _) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(s, StatusCode::OK);
    sf.control(Method::POST, "faults", Some(json!({"api_budget": 10})))
        .await;
    let (_, limit, _) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(limit.unwrap(), "api-usage=2/10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_concurrent_long_calls_over_the_cap_are_refused() {
    let sf = Sf::start(&[
        "--max-long-calls",
        "1",
        "--long-call-secs",
        "1",
        "--latency-ms",
        "3000",
    ])
    .await;
    let limits = format!("{V}/limits");
    let first = sf.call(Method::GET, &limits, None);
    let second = async {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        sf.call(Method::GET, &limits, None).await
    };
    let ((s1, _, _), (s2, _, b2)) = tokio::join!(first, second);
    assert_eq!(s1, StatusCode::OK);
    assert_eq!(s2, StatusCode::FORBIDDEN);
    assert_eq!(
        b2,
        json!([{"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert_eq!(
        sf.stats().await["violations"][0]["limit"],
        "concurrent_long_calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_in_flight_writes_of_children_of_one_account_conflict() {
    let sf = Sf::start(&["--latency-ms", "1500"]).await;
    let (s, _) = sf
        .upsert_collection("Account", accounts("P", 2), false)
        .await;
    assert_eq!(s, StatusCode::OK);
    let child = |key: &str, parent: &str| json!({"OneKey_Id__c": key, "Name": key, "Account": {"OneKey_Id__c": parent}});
    let a = sf.upsert_collection("HealthcareProvider", vec![child("HA", "P0")], false);
    let b = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sf.upsert_collection(
            "HealthcareProvider",
            vec![child("HB", "P0"), child("HC", "P1")],
            false,
        )
        .await
    };
    let ((_, ra), (_, rb)) = tokio::join!(a, b);
    assert_eq!(ra[0]["success"], true);
    assert_eq!(rb[0]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");
    assert!(rb[0]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("unable to obtain exclusive access to this record or 1 records: 001"));
    assert_eq!(rb[1]["success"], true, "another parent is free");
    // Once the first request answered, the parent is free again.
    let (_, rc) = sf
        .upsert_collection("HealthcareProvider", vec![child("HB", "P0")], false)
        .await;
    assert_eq!(rc[0]["success"], true);
    let stats = sf.stats().await;
    assert_eq!(stats["faults"]["lock_conflicts"], 1);
    assert_eq!(stats["limit_violations"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_injected_lock_errors_503s_and_graph_casualties() {
    let sf = Sf::start(&["--lock-errors", "1.0"]).await;
    let (_, b) = sf
        .upsert_collection("Account", accounts("L", 1), false)
        .await;
    assert_eq!(
        b[0]["success"], true,
        "a record without a parent takes no lock"
    );
    let (_, b) = sf
        .upsert_collection(
            "HealthcareProvider",
            vec![json!({"OneKey_Id__c": "LH", "Name": "n", "Account": {"OneKey_Id__c": "L0"}})],
            false,
        )
        .await;
    assert_eq!(b[0]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");
    let (_, _, b) = sf
        .call(
            Method::POST,
            &format!("{V}/composite/graph"),
            Some(json!({"graphs": [account_graph("g", "LG", true)]})),
        )
        .await;
    let nodes = &b["graphs"][0]["graphResponse"]["compositeResponse"];
    assert_eq!(nodes[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(nodes[1]["body"][0]["errorCode"], "UNABLE_TO_LOCK_ROW");
    sf.control(
        Method::POST,
        "faults",
        Some(json!({"lock_errors": 0.0, "fail_503": 1.0})),
    )
    .await;
    let (s, _, b) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVER_UNAVAILABLE")
    );
    sf.control(Method::POST, "faults", Some(json!({"fail_503": 0.0})))
        .await;
    let (_, b) = sf
        .upsert_collection(
            "HealthcareProvider",
            vec![json!({"OneKey_Id__c": "LH", "Name": "n", "Account": {"OneKey_Id__c": "L0"}})],
            false,
        )
        .await;
    assert_eq!(b[0]["success"], true);
    let stats = sf.stats().await;
    assert_eq!(
        (
            stats["faults"]["fail_503"].clone(),
            stats["faults"]["lock_errors"].clone()
        ),
        (json!(1), json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_tokens_expire_and_jwt_assertions_are_checked() {
    let cert = fixture("jwt-test-cert.pem");
    let sf = Sf::start(&[
        "--token-ttl-secs",
        "2",
        "--jwt-cert",
        cert.to_str().unwrap(),
    ])
    .await;
    let (s, _, _) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, limit, b) = sf.call(Method::GET, &format!("{V}/limits"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    assert!(limit.is_none());
    let bad = sf
        .http
        .post(format!("{}/services/oauth2/token", sf.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "provsync"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let key = jwt_key();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = |iss: &str, aud: &str, exp: u64| json!({"iss": iss, "sub": "integration@provsync.example", "aud": aud, "exp": exp});
    let jwt = |c: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &c,
            &key,
        )
        .unwrap()
    };
    let grant = |assertion: String| {
        let http = sf.http.clone();
        let url = format!("{}/services/oauth2/token", sf.url);
        async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, ok) = grant(jwt(claims(
        "provsync",
        "https://login.salesforce.com",
        now + 120,
    )))
    .await;
    assert_eq!(s, StatusCode::OK, "{ok}");
    let (_, e) = grant(jwt(claims(
        "someone",
        "https://login.salesforce.com",
        now + 120,
    )))
    .await;
    assert_eq!(e["error"], "invalid_client_id");
    let (_, e) = grant(jwt(claims("provsync", "https://example.com", now + 120))).await;
    assert_eq!(e["error"], "invalid_grant");
    let (_, e) = grant(jwt(claims(
        "provsync",
        "https://test.salesforce.com",
        now - 10,
    )))
    .await;
    assert_eq!(e["error"], "invalid_grant");
    let (_, e) = grant(jwt(claims(
        "provsync",
        "https://login.salesforce.com",
        now + 86_400,
    )))
    .await;
    assert_eq!(e["error"], "invalid_grant");
    let mut forged = jwt(claims(
        "provsync",
        "https://login.salesforce.com",
        now + 120,
    ));
    forged.replace_range(forged.len() - 6.., "AAAAAA");
    let (_, e) = grant(forged).await;
    assert_eq!(e["error"], "invalid_grant");
    let token = ok["access_token"].as_str().unwrap();
    let r = sf
        .http
        .get(format!("{}{V}/limits", sf.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sf.control(Method::POST, "expire-tokens", None).await["expired"],
        1
    );
    let r = sf
        .http
        .get(format!("{}{V}/limits", sf.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The SPKI public key works as well as the certificate.
    let pubkey = fixture("jwt-test-pubkey.pem");
    let sf2 = Sf::start(&["--jwt-cert", pubkey.to_str().unwrap()]).await;
    let r = sf2
        .http
        .post(format!("{}/services/oauth2/token", sf2.url))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            (
                "assertion",
                jwt(claims(
                    "provsync",
                    "https://login.salesforce.com",
                    now + 120,
                ))
                .as_str(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn jwt_key() -> jsonwebtoken::EncodingKey {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(fixture("jwt-test-key.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    jsonwebtoken::EncodingKey::from_rsa_der(&der)
}

async fn wait_job(sf: &Sf, id: &str) -> Value {
    for _ in 0..200 {
        let (_, _, j) = sf
            .call(Method::GET, &format!("{V}/jobs/ingest/{id}"), None)
            .await;
        if matches!(
            j["state"].as_str(),
            Some("JobComplete" | "Failed" | "Aborted")
        ) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

async fn create_job(sf: &Sf, object: &str) -> String {
    let (s, _, j) = sf
        .call(
            Method::POST,
            &format!("{V}/jobs/ingest"),
            Some(json!({"object": object, "operation": "upsert", "externalIdFieldName": "OneKey_Id__c",
                        "contentType": "CSV", "lineEnding": "LF"})),
        )
        .await;
    assert_eq!(
        (s, j["state"].as_str()),
        (StatusCode::OK, Some("Open")),
        "{j}"
    );
    j["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_bulk_ingest_runs_the_job_state_machine() {
    let sf = Sf::start(&[]).await;
    sf.upsert_collection("Account", accounts("B", 1), false)
        .await;
    let id = create_job(&sf, "HealthcareProvider").await;
    assert!(id.starts_with("750"));
    let mut csv = String::from("OneKey_Id__c,Name,Account.OneKey_Id__c\n");
    for i in 0..450 {
        csv.push_str(&format!("BH{i},\"Dr, {i}\",B0\n"));
    }
    csv.push_str("BHX,,B0\nBHY,Nobody,NOPE\n");
    let (s, _) = sf
        .csv(Method::PUT, &format!("{V}/jobs/ingest/{id}/batches"), &csv)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = sf
        .csv(Method::PUT, &format!("{V}/jobs/ingest/{id}/batches"), &csv)
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "BULK_API_ERROR")
    );
    let (s, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/jobs/ingest/{id}/successfulResults"),
            None,
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "INVALIDJOBSTATE"),
        "no results while Open"
    );
    let (_, _, j) = sf
        .call(
            Method::PATCH,
            &format!("{V}/jobs/ingest/{id}"),
            Some(json!({"state": "UploadComplete"})),
        )
        .await;
    assert_eq!(j["state"], "UploadComplete");
    let j = wait_job(&sf, &id).await;
    assert_eq!(
        (
            j["state"].clone(),
            j["numberRecordsProcessed"].clone(),
            j["numberRecordsFailed"].clone()
        ),
        (json!("JobComplete"), json!(452), json!(2))
    );
    let (_, _, ok) = sf
        .call(
            Method::GET,
            &format!("{V}/jobs/ingest/{id}/successfulResults"),
            None,
        )
        .await;
    let ok = ok.as_str().unwrap().to_owned();
    assert_eq!(ok.lines().count(), 451);
    assert!(ok.starts_with(
        "\"sf__Id\",\"sf__Created\",\"OneKey_Id__c\",\"Name\",\"Account.OneKey_Id__c\"\n"
    ));
    assert!(
        ok.lines()
            .nth(1)
            .unwrap()
            .ends_with(",\"true\",\"BH0\",\"Dr, 0\",\"B0\""),
        "{ok}"
    );
    let (_, _, bad) = sf
        .call(
            Method::GET,
            &format!("{V}/jobs/ingest/{id}/failedResults"),
            None,
        )
        .await;
    let bad = bad.as_str().unwrap().to_owned();
    assert!(
        bad.contains("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"),
        "{bad}"
    );
    assert!(
        bad.contains("INVALID_FIELD:Foreign key external ID: NOPE not found"),
        "{bad}"
    );
    let (_, _, q) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Name+FROM+HealthcareProvider+WHERE+OneKey_Id__c='BH7'"),
            None,
        )
        .await;
    assert_eq!(q["records"][0]["Name"], "Dr, 7");
    let (s, _, _) = sf
        .call(
            Method::PATCH,
            &format!("{V}/jobs/ingest/{id}"),
            Some(json!({"state": "Aborted"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a finished job cannot be aborted"
    );
    // Abort an open job: its data is unprocessed.
    let open = create_job(&sf, "Account").await;
    sf.csv(
        Method::PUT,
        &format!("{V}/jobs/ingest/{open}/batches"),
        "OneKey_Id__c,Name\nZ1,z\n",
    )
    .await;
    let (_, _, j) = sf
        .call(
            Method::PATCH,
            &format!("{V}/jobs/ingest/{open}"),
            Some(json!({"state": "Aborted"})),
        )
        .await;
    assert_eq!(j["state"], "Aborted");
    let (_, _, un) = sf
        .call(
            Method::GET,
            &format!("{V}/jobs/ingest/{open}/unprocessedrecords"),
            None,
        )
        .await;
    assert_eq!(un.as_str().unwrap(), "OneKey_Id__c,Name\nZ1,z\n");
    let (s, _, _) = sf
        .call(
            Method::PATCH,
            &format!("{V}/jobs/ingest/{open}"),
            Some(json!({"state": "UploadComplete"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A header naming an unknown field fails the job.
    let failing = create_job(&sf, "Account").await;
    sf.csv(
        Method::PUT,
        &format!("{V}/jobs/ingest/{failing}/batches"),
        "OneKey_Id__c,Bogus\nZ2,z\n",
    )
    .await;
    sf.call(
        Method::PATCH,
        &format!("{V}/jobs/ingest/{failing}"),
        Some(json!({"state": "UploadComplete"})),
    )
    .await;
    let j = wait_job(&sf, &failing).await;
    assert_eq!(
        (j["state"].clone(), j["errorMessage"].clone()),
        (
            json!("Failed"),
            json!("InvalidBatch : Field name not found : Bogus")
        )
    );
    let (_, _, list) = sf
        .call(Method::GET, &format!("{V}/jobs/ingest"), None)
        .await;
    assert_eq!(list["records"].as_array().unwrap().len(), 3);
    let (s, _, _) = sf
        .call(Method::DELETE, &format!("{V}/jobs/ingest/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = sf
        .call(Method::GET, &format!("{V}/jobs/ingest/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let stats = sf.stats().await;
    assert!(stats["calls_by_kind"]["bulk_status"].as_u64().unwrap() >= 2);
    assert_eq!(stats["limit_violations"], 0);
}

fn upsert_value_set(name: &str, values: &[&str]) -> String {
    let values: String = values
        .iter()
        .map(|v| format!("<customValue><fullName>{v}</fullName><default>false</default><label>{v}</label></customValue>"))
        .collect();
    format!(
        "<upsertMetadata xmlns=\"http://soap.sforce.com/2006/04/metadata\"><metadata xsi:type=\"GlobalValueSet\">\
         <fullName>{name}</fullName>{values}<masterLabel>{name}</masterLabel><sorted>false</sorted></metadata></upsertMetadata>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_metadata_value_sets_feed_restricted_picklists() {
    let sf = Sf::start(&[]).await;
    let facility =
        |key: &str, role: &str| json!({"OneKey_Id__c": key, "Name": key, "Role__c": role});
    let (_, b) = sf
        .upsert_collection(
            "HealthcarePractitionerFacility",
            vec![facility("F1", "Chief")],
            false,
        )
        .await;
    assert_eq!(
        b[0]["errors"][0]["statusCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    let (s, xml) = sf
        .soap(
            &sf.token,
            &upsert_value_set("OneKey_Role", &["Chief", "Resident"]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(xml.contains("<result><created>false</created><fullName>OneKey_Role</fullName><success>true</success></result>"), "{xml}");
    let (_, b) = sf
        .upsert_collection(
            "HealthcarePractitionerFacility",
            vec![facility("F1", "Chief")],
            false,
        )
        .await;
    assert_eq!(b[0]["success"], true);
    sf.soap(&sf.token, &upsert_value_set("OneKey_Role", &["Resident"]))
        .await;
    let read = "<readMetadata xmlns=\"http://soap.sforce.com/2006/04/metadata\"><type>GlobalValueSet</type>\
                <fullNames>OneKey_Role</fullNames></readMetadata>";
    let (_, xml) = sf.soap(&sf.token, read).await;
    assert!(
        xml.contains("<records xsi:type=\"GlobalValueSet\"><fullName>OneKey_Role</fullName>"),
        "{xml}"
    );
    assert!(xml.contains("<customValue><fullName>Chief</fullName><default>false</default><isActive>false</isActive><label>Chief</label></customValue>"), "{xml}");
    let (_, b) = sf
        .upsert_collection(
            "HealthcarePractitionerFacility",
            vec![facility("F2", "Chief")],
            false,
        )
        .await;
    assert_eq!(
        b[0]["errors"][0]["statusCode"], "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "deactivated on omit"
    );
    let (_, _, d) = sf
        .call(
            Method::GET,
            &format!("{V}/sobjects/HealthcarePractitionerFacility/describe"),
            None,
        )
        .await;
    let role = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Role__c")
        .unwrap();
    assert_eq!(role["restrictedPicklist"], true);
    assert_eq!(
        role["picklistValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["value"].clone())
            .collect::<Vec<_>>(),
        [json!("Resident")]
    );
    assert_eq!(sf.violations().await, 0);
    // 1,000 values at most, inactive ones included: 999 new plus the 2 stored = 1,001.
    let many: Vec<String> = (0..999).map(|i| format!("V{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (s, xml) = sf
        .soap(&sf.token, &upsert_value_set("OneKey_Role", &many))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        xml.contains("<success>false</success>")
            && xml.contains("<statusCode>LIMIT_EXCEEDED</statusCode>"),
        "{xml}"
    );
    let long = "x".repeat(256);
    let (_, xml) = sf
        .soap(
            &sf.token,
            &upsert_value_set("OneKey_Role", &[long.as_str()]),
        )
        .await;
    assert!(
        xml.contains("<statusCode>STRING_TOO_LONG</statusCode>"),
        "{xml}"
    );
    let eleven: String = (0..11)
        .map(|i| format!("<metadata xsi:type=\"GlobalValueSet\"><fullName>S{i}</fullName><masterLabel>S</masterLabel><sorted>false</sorted></metadata>"))
        .collect();
    let (s, xml) = sf
        .soap(&sf.token, &format!("<upsertMetadata xmlns=\"http://soap.sforce.com/2006/04/metadata\">{eleven}</upsertMetadata>"))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        xml.contains("<faultcode") && xml.contains("LIMIT_EXCEEDED"),
        "{xml}"
    );
    assert_eq!(sf.violations().await, 3);
    let (s, xml) = sf.soap("not-a-session", read).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(xml.contains("INVALID_SESSION_ID"), "{xml}");
    let r = sf
        .http
        .post(format!("{}/services/Soap/m/63.0", sf.url))
        .body("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"boom\">]><x>&e;</x>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_restart_keeps_records_value_sets_jobs_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("org");
    let flags = ["--state", state.to_str().unwrap(), "--api-budget", "1000"];
    let sf = Sf::start(&flags).await;
    sf.upsert_collection("Account", accounts("S", 50), false)
        .await;
    sf.soap(&sf.token, &upsert_value_set("OneKey_Role", &["Chief"]))
        .await;
    let id = create_job(&sf, "Account").await;
    sf.csv(
        Method::PUT,
        &format!("{V}/jobs/ingest/{id}/batches"),
        "OneKey_Id__c,Name\nSJ1,j\n",
    )
    .await;
    sf.call(
        Method::PATCH,
        &format!("{V}/jobs/ingest/{id}"),
        Some(json!({"state": "UploadComplete"})),
    )
    .await;
    wait_job(&sf, &id).await;
    let used = sf.stats().await["api_calls_used"].as_u64().unwrap();
    // A killed process keeps what it acknowledged (the journal).
    drop(sf);
    let sf = Sf::start(&flags).await;
    let (_, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+COUNT()+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(b["totalSize"], 51);
    let (_, _, j) = sf
        .call(Method::GET, &format!("{V}/jobs/ingest/{id}"), None)
        .await;
    assert_eq!(j["state"], "JobComplete");
    let (_, b) = sf
        .upsert_collection(
            "HealthcarePractitionerFacility",
            vec![json!({"OneKey_Id__c": "SF", "Name": "SF", "Role__c": "Chief"})],
            false,
        )
        .await;
    assert_eq!(b[0]["success"], true, "the value set survived: {b}");
    assert_eq!(
        sf.stats().await["api_calls_used"].as_u64().unwrap(),
        used + 3,
        "the budget window survived"
    );
    // A clean stop writes a snapshot; the next start has everything too.
    sf.upsert_collection("Account", accounts("T", 3), false)
        .await;
    sf.terminate();
    assert!(state.join("snapshot.json").exists());
    let sf = Sf::start(&flags).await;
    let (_, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+COUNT()+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(b["totalSize"], 54);
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/sobjects/Account/OneKey_Id__c/NEW"),
            Some(json!({"Name": "n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, _, all) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Id+FROM+Account"),
            None,
        )
        .await;
    let ids: std::collections::BTreeSet<&str> = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 55, "ids are not reused after a restart");
    assert!(ids.contains(b["id"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_apex_rest_calls_are_recorded() {
    let sf = Sf::start(&[]).await;
    let (s, limit, b) = sf
        .call(
            Method::POST,
            "/services/apexrest/provsync/v1/jobs?x=1",
            Some(json!({"job": "J1"})),
        )
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({})));
    assert!(limit.is_some());
    let calls = sf.control(Method::GET, "apex-calls", None).await;
    assert_eq!(calls[0]["path"], "provsync/v1/jobs");
    assert_eq!(calls[0]["method"], "POST");
    assert_eq!(calls[0]["query"], "x=1");
    assert_eq!(calls[0]["body"], json!({"job": "J1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_emulator_answers_an_independent_client_jsforce() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let modules = root.join(".ci/node/node_modules");
    let has_node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_node || !modules.join("jsforce").exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "node or jsforce (.ci/node/node_modules) is missing and CI=true"
        );
        eprintln!("SKIPPED: node or jsforce is not installed (npm ci --prefix .ci/node)");
        return;
    }
    let sf = Sf::start(&[]).await;
    let out = Command::new("node")
        .arg(root.join("scripts/jsforce-conformance.mjs"))
        .arg(&sf.url)
        .env("JSFORCE_NODE_MODULES", &modules)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "jsforce failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("{\"ok\":true,\"checks\":5}"), "{stdout}");
    let stats = sf.stats().await;
    assert_eq!(
        stats["limit_violations"], 1,
        "the script's 256-character value: {stats}"
    );
    for kind in [
        "collections_upsert",
        "metadata_read",
        "metadata_upsert",
        "bulk_create",
        "bulk_upload",
        "query_more",
    ] {
        assert!(
            stats["calls_by_kind"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind}: {stats}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_schema_file_replaces_the_default_org() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"sobjects": [{"name": "Widget__c", "keyPrefix": "a01", "fields": [
            {"name": "Code__c", "type": "string", "length": 10, "externalId": true, "unique": true},
            {"name": "Name", "type": "string", "nillable": false}]}]}"#,
    )
    .unwrap();
    let sf = Sf::start(&["--schema", schema.to_str().unwrap()]).await;
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/sobjects/Widget__c/Code__c/W1"),
            Some(json!({"Name": "w"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(b["id"].as_str().unwrap().starts_with("a01"));
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/sobjects/Widget__c/Code__c/W2"),
            Some(json!({"Name": "w", "OneKey_Id__c": "x"})),
        )
        .await;
    assert_eq!(
        b[0]["message"],
        "No such column 'OneKey_Id__c' on sobject of type Widget__c"
    );
    let (s, _, _) = sf
        .call(Method::GET, &format!("{V}/sobjects/Account/describe"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"sobjects": [{"name": "X", "keyPrefix": "toolong", "fields": []}]}"#,
    )
    .unwrap();
    let out = Command::new(bin())
        .args([
            "emulate",
            "salesforce",
            "--listen",
            "127.0.0.1:0",
            "--schema",
            bad.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keyPrefix"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_collections_create_and_update_by_id() {
    let sf = Sf::start(&[]).await;
    let create = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Account"}, "OneKey_Id__c": "K1", "Name": "one"},
        {"attributes": {"type": "CareSpecialty"}, "OneKey_Id__c": "CS1", "Name": "Cardiology"},
        {"attributes": {"type": "CareSpecialty"}, "OneKey_Id__c": "CS2"}]});
    let (s, _, b) = sf
        .call(
            Method::POST,
            &format!("{V}/composite/sobjects"),
            Some(create),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (b[0]["success"].clone(), b[1]["success"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(b[2]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    let id = b[0]["id"].as_str().unwrap().to_owned();
    let update = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Account"}, "id": id, "Active__c": false},
        {"attributes": {"type": "Account"}, "Id": "001Em000000009zIAA", "Active__c": false}]});
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/composite/sobjects"),
            Some(update),
        )
        .await;
    assert_eq!(
        b[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(b[1]["errors"][0]["statusCode"], "NOT_FOUND");
    let update =
        json!({"records": [{"attributes": {"type": "Account"}, "Id": id, "Active__c": false}]});
    let (_, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/composite/sobjects"),
            Some(update),
        )
        .await;
    assert_eq!(b[0]["success"], true);
    let (_, _, r) = sf
        .call(Method::GET, &format!("{V}/sobjects/Account/{id}"), None)
        .await;
    assert_eq!(r["Active__c"], false);
}

/// Duplicate rules over HTTP: the REST and collections error shapes carry the
/// `duplicateResult`; the request's `Sforce-Duplicate-Rule-Header: allowSave=true`
/// saves; a composite graph's subrequests do not inherit it from the graph request
/// but take it from their own `httpHeaders`; Bulk API 2.0 takes no such header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_duplicate_rules_answer_duplicates_detected_unless_allow_save() {
    let sf = Sf::start(&["--duplicate-rule", "Account:Name"]).await;
    let allow = [(
        "Sforce-Duplicate-Rule-Header",
        "allowSave=true; includeRecordDetails=false",
    )];
    let upsert = |key: &str| format!("{V}/sobjects/Account/OneKey_Id__c/{key}");
    let (s, _, first) = sf
        .call(Method::PATCH, &upsert("D1"), Some(json!({"Name": "Acme"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, _, b) = sf
        .call(Method::PATCH, &upsert("D2"), Some(json!({"Name": "ACME "})))
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "DUPLICATES_DETECTED")
    );
    let d = &b[0]["duplicateResult"];
    assert_eq!(d["duplicateRule"], "Account_Duplicate_Rule", "{b}");
    assert_eq!(d["duplicateRuleEntityType"], "Account");
    assert_eq!(
        d["matchResults"][0]["matchRecords"][0]["record"]["Id"],
        first["id"]
    );
    let (s, b) = sf
        .upsert_collection(
            "Account",
            vec![json!({"OneKey_Id__c": "D3", "Name": "acme"})],
            false,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b[0]["errors"][0]["statusCode"], "DUPLICATES_DETECTED",
        "{b}"
    );
    assert_eq!(
        b[0]["errors"][0]["duplicateResult"]["allowSave"], true,
        "{b}"
    );
    let (s, _, b) = sf
        .call_with(
            Method::PATCH,
            &upsert("D2"),
            Some(json!({"Name": "Acme"})),
            &allow,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Graph: the graph request's header does not reach its nodes; a node's own does.
    let graph = |key: &str, own: Option<Value>| {
        let mut n = node("acc", "PATCH", &upsert(key), json!({"Name": "Acme"}));
        if let Some(h) = own {
            n["httpHeaders"] = h;
        }
        json!({"graphs": [{"graphId": "g", "compositeRequest": [n]}]})
    };
    let path = format!("{V}/composite/graph");
    let (_, _, b) = sf
        .call_with(Method::POST, &path, Some(graph("D4", None)), &allow)
        .await;
    assert_eq!(b["graphs"][0]["isSuccessful"], false, "{b}");
    let body = &b["graphs"][0]["graphResponse"]["compositeResponse"][0]["body"];
    assert_eq!(error_code(body), "DUPLICATES_DETECTED", "{b}");
    let own = json!({"Sforce-Duplicate-Rule-Header": "allowSave=true"});
    let (_, _, b) = sf
        .call(Method::POST, &path, Some(graph("D4", Some(own))))
        .await;
    assert_eq!(b["graphs"][0]["isSuccessful"], true, "{b}");

    // Bulk API 2.0: the header on the job's calls changes nothing.
    let (_, _, j) = sf
        .call_with(
            Method::POST,
            &format!("{V}/jobs/ingest"),
            Some(json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "OneKey_Id__c",
                        "contentType": "CSV", "lineEnding": "LF"})),
            &allow,
        )
        .await;
    let id = j["id"].as_str().unwrap().to_owned();
    let (s, _) = sf
        .csv(
            Method::PUT,
            &format!("{V}/jobs/ingest/{id}/batches"),
            "OneKey_Id__c,Name\nD5,Acme\n",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    sf.call_with(
        Method::PATCH,
        &format!("{V}/jobs/ingest/{id}"),
        Some(json!({"state": "UploadComplete"})),
        &allow,
    )
    .await;
    let j = wait_job(&sf, &id).await;
    assert_eq!(j["numberRecordsFailed"], 1, "{j}");
    let (_, _, failed) = sf
        .call(
            Method::GET,
            &format!("{V}/jobs/ingest/{id}/failedResults"),
            None,
        )
        .await;
    assert!(
        failed
            .as_str()
            .unwrap()
            .contains("DUPLICATES_DETECTED:Use one of these records?"),
        "{failed}"
    );
    assert_eq!(sf.violations().await, 0);
}

/// A field hidden by field-level security is not in describe, and SOQL and writes
/// naming it answer as for a field the object lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_a_hidden_field_is_not_described_queried_or_written() {
    let sf = Sf::start(&["--hide-field", "Account.Phone"]).await;
    let (_, _, d) = sf
        .call(Method::GET, &format!("{V}/sobjects/Account/describe"), None)
        .await;
    let names: Vec<&str> = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&"Name") && !names.contains(&"Phone"),
        "{names:?}"
    );
    let (s, _, b) = sf
        .call(
            Method::GET,
            &format!("{V}/query?q=SELECT+Phone+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "INVALID_FIELD"),
        "{b}"
    );
    let (s, _, b) = sf
        .call(
            Method::PATCH,
            &format!("{V}/sobjects/Account/OneKey_Id__c/H1"),
            Some(json!({"Name": "H", "Phone": "555"})),
        )
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (StatusCode::BAD_REQUEST, "INVALID_FIELD"),
        "{b}"
    );
}
