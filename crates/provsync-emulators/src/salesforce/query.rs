//! `GET /query?q=` and `GET /query/{locator}`: runs the SOQL subset over the org and
//! pages results by 2,000 rows behind `nextRecordsUrl`.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::errors::ApiError;
use super::rest::{attributes, violation, Exec, Reply};
use super::schema::SObject;
use super::soql::{self, Cmp, Lit};
use super::store::{Org, Record};

/// Rows per page: "The maximum result size is 2000" (Salesforce Help, "Maximum number
/// of rows returned by SOQL queries over the REST API", knowledge article 000386264,
/// https://help.salesforce.com/s/articleView?id=000386264&type=1).
pub const PAGE: usize = 2_000;
/// Open cursors kept (guess: the emulator's own bound, older ones are dropped and
/// their locators answer `INVALID_QUERY_LOCATOR`; Salesforce does not document one
/// for REST locators).
const MAX_CURSORS: usize = 200;
/// Longest SOQL statement: "By default, 100,000 characters" (Salesforce Developer
/// Limits and Allocations Quick Reference, "SOQL and SOSL Limits for Search Queries",
/// https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_soslsoql.htm;
/// the code for going over, `MALFORMED_QUERY`, is a guess).
pub const MAX_SOQL_CHARS: usize = 100_000;

/// The rows of a query not yet returned.
#[derive(Debug)]
pub struct Cursor {
    rows: Vec<Value>,
    total: usize,
    version_text: String,
}

fn no_such_column(field: &str, object: &str) -> ApiError {
    ApiError::bad(
        "INVALID_FIELD",
        format!(
            "No such column '{field}' on entity '{object}'. If you are attempting to use a custom \
             field, be sure to append the '__c' after the custom field name. Please reference your \
             WSDL or the describe call for the appropriate names."
        ),
    )
}

/// A selected or filtered field: direct, or through a parent relationship.
enum Path<'a> {
    Direct(&'a str),
    Parent {
        via: &'a str,
        object: &'a SObject,
        rel: &'a str,
        field: &'a str,
    },
}

fn resolve<'a>(
    x: &Exec<'a>,
    o: &'a SObject,
    name: &str,
    version: f64,
) -> Result<Path<'a>, ApiError> {
    match name.split_once('.') {
        None => o
            .field(name)
            .map(|f| Path::Direct(f.name.as_str()))
            .ok_or_else(|| no_such_column(name, &o.name)),
        Some((rel, field)) => {
            let r = o
                .relationship(rel)
                .ok_or_else(|| no_such_column(name, &o.name))?;
            let target = r
                .reference_to
                .first()
                .and_then(|t| x.object(t, version))
                .ok_or_else(|| no_such_column(name, &o.name))?;
            let f = target
                .field(field)
                .ok_or_else(|| no_such_column(field, &target.name))?;
            Ok(Path::Parent {
                via: r.name.as_str(),
                object: target,
                rel: r.relationship_name.as_deref().unwrap_or_default(),
                field: f.name.as_str(),
            })
        }
    }
}

fn value_of<'r>(org: &'r Org, r: &'r Record, p: &Path<'_>) -> Option<&'r Value> {
    match p {
        Path::Direct(f) => r.get(*f),
        Path::Parent {
            via, object, field, ..
        } => {
            let id = r.get(*via)?.as_str()?;
            org.get(&object.name, id)?.get(*field)
        }
    }
}

fn lit_matches(v: Option<&Value>, lit: &Lit) -> Option<Ordering> {
    let v = v.filter(|v| !v.is_null());
    match (v, lit) {
        (None, Lit::Null) => Some(Ordering::Equal),
        (None, _) | (Some(_), Lit::Null) => None,
        (Some(Value::Bool(b)), Lit::Bool(l)) => Some(b.cmp(l)),
        (Some(Value::Number(n)), Lit::Bare(b)) => {
            let (a, b) = (n.as_f64()?, b.parse::<f64>().ok()?);
            a.partial_cmp(&b)
        }
        // Text comparison in SOQL ignores case.
        (Some(Value::String(s)), Lit::Str(l) | Lit::Bare(l)) => {
            Some(s.to_lowercase().cmp(&l.to_lowercase()))
        }
        _ => None,
    }
}

fn passes(v: Option<&Value>, cmp: &Cmp) -> bool {
    let is = |lit: &Lit, want: &[Ordering]| lit_matches(v, lit).is_some_and(|o| want.contains(&o));
    match cmp {
        Cmp::Eq(l) => is(l, &[Ordering::Equal]),
        Cmp::Ne(Lit::Null) => v.is_some_and(|v| !v.is_null()),
        Cmp::Ne(l) => !is(l, &[Ordering::Equal]),
        Cmp::Lt(l) => is(l, &[Ordering::Less]),
        Cmp::Le(l) => is(l, &[Ordering::Less, Ordering::Equal]),
        Cmp::Gt(l) => is(l, &[Ordering::Greater]),
        Cmp::Ge(l) => is(l, &[Ordering::Greater, Ordering::Equal]),
        Cmp::In(ls) => ls.iter().any(|l| is(l, &[Ordering::Equal])),
        Cmp::NotIn(ls) => !ls.iter().any(|l| is(l, &[Ordering::Equal])),
    }
}

fn order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => Ordering::Equal,
        // NULLS FIRST is SOQL's default for ascending order.
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

/// Handles `GET /query?q=`.
pub fn handle(x: &mut Exec<'_>, version: f64, vt: &str, query: Option<&str>) -> Reply {
    let q = query
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("q="))
                .map(form_decode)
        })
        .unwrap_or_default();
    if q.is_empty() {
        return ApiError::bad("MALFORMED_QUERY", "A query string has to be specified").into();
    }
    if q.chars().count() > MAX_SOQL_CHARS {
        return violation(
            x.emu,
            "soql_length",
            ApiError::bad(
                "MALFORMED_QUERY",
                "SOQL statements cannot be longer than 100,000 characters.",
            ),
        );
    }
    let parsed = match soql::parse(&q) {
        Ok(p) => p,
        Err(why) => {
            return ApiError::bad(
                "MALFORMED_QUERY",
                format!("\n{q}\n^\nERROR at Row:1:Column:1\n{why}"),
            )
            .into()
        }
    };
    let Some(o) = x.object(&parsed.object, version) else {
        return ApiError::invalid_type(&parsed.object).into();
    };
    match run(x, o, &parsed, version, vt) {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

fn run(
    x: &mut Exec<'_>,
    o: &SObject,
    q: &soql::Query,
    version: f64,
    vt: &str,
) -> Result<Reply, ApiError> {
    let conds: Vec<(Path<'_>, &Cmp)> = q
        .conditions
        .iter()
        .map(|c| resolve(x, o, &c.field, version).map(|p| (p, &c.cmp)))
        .collect::<Result<_, _>>()?;
    let select: Vec<(String, Path<'_>)> = match &q.fields {
        Some(fs) => fs
            .iter()
            .map(|f| resolve(x, o, f, version).map(|p| (f.clone(), p)))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let order_by = match &q.order_by {
        Some((f, desc)) => Some((resolve(x, o, f, version)?, *desc)),
        None => None,
    };
    let org = &*x.org;
    let table = org.table(&o.name);
    // A key field compared with `=` or `IN` narrows the scan to its index.
    let keyed = conds.iter().find_map(|(p, cmp)| {
        match (p, cmp) {
            (Path::Direct(f), Cmp::Eq(Lit::Str(v))) if o.field(f).is_some_and(|f| f.is_key()) => {
                Some(vec![v.clone()])
            }
            (Path::Direct(f), Cmp::In(ls)) if o.field(f).is_some_and(|f| f.is_key()) => Some(
                ls.iter()
                    .filter_map(|l| match l {
                        Lit::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
        .map(|values| (*f_name(p), values))
    });
    let mut rows: Vec<&Record> = match keyed {
        Some((field, values)) => {
            let mut ids: Vec<&String> = values
                .iter()
                .flat_map(|v| org.find_by_key(&o.name, field, v))
                .collect();
            ids.sort();
            ids.dedup();
            ids.into_iter()
                .filter_map(|id| table.rows.get(id))
                .collect()
        }
        None => table.rows.values().collect(),
    };
    rows.retain(|r| {
        conds
            .iter()
            .all(|(p, cmp)| passes(value_of(org, r, p), cmp))
    });
    if let Some((p, desc)) = &order_by {
        rows.sort_by(|a, b| {
            let o = order(value_of(org, a, p), value_of(org, b, p));
            if *desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    if let Some(limit) = q.limit {
        rows.truncate(limit);
    }
    if q.fields.is_none() {
        return Ok(Reply::ok(
            json!({"totalSize": rows.len(), "done": true, "records": []}),
        ));
    }
    let out: Vec<Value> = rows
        .iter()
        .map(|r| project(org, o, r, &select, vt))
        .collect();
    Ok(page(x, out, vt))
}

fn f_name<'p>(p: &'p Path<'_>) -> &'p &'p str {
    match p {
        Path::Direct(f) => f,
        Path::Parent { field, .. } => field,
    }
}

fn project(org: &Org, o: &SObject, r: &Record, select: &[(String, Path<'_>)], vt: &str) -> Value {
    let id = r.get("Id").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    out.insert("attributes".into(), attributes(o, id, vt));
    for (_, p) in select {
        match p {
            Path::Direct(f) => {
                out.insert((*f).to_owned(), r.get(*f).cloned().unwrap_or(Value::Null));
            }
            Path::Parent {
                via,
                object,
                rel,
                field,
            } => {
                let parent = r
                    .get(*via)
                    .and_then(Value::as_str)
                    .and_then(|pid| org.get(&object.name, pid).map(|pr| (pid, pr)));
                let entry = out.entry((*rel).to_owned()).or_insert(Value::Null);
                if let Some((pid, pr)) = parent {
                    if entry.is_null() {
                        let mut m = Map::new();
                        m.insert("attributes".into(), attributes(object, pid, vt));
                        *entry = Value::Object(m);
                    }
                    if let Value::Object(m) = entry {
                        m.insert(
                            (*field).to_owned(),
                            pr.get(*field).cloned().unwrap_or(Value::Null),
                        );
                    }
                }
            }
        }
    }
    Value::Object(out)
}

fn locator(n: u64) -> String {
    super::ids::make_id("01g", n)
}

fn page(x: &mut Exec<'_>, mut rows: Vec<Value>, vt: &str) -> Reply {
    let total = rows.len();
    if total <= PAGE {
        return Reply::ok(json!({"totalSize": total, "done": true, "records": rows}));
    }
    let rest = rows.split_off(PAGE);
    let loc = locator(x.scope.req);
    let mut cursors = x.emu.cursors.lock().expect("cursors lock");
    // Cursors a client never finishes are dropped, oldest first (Salesforce expires
    // them too).
    while cursors.len() >= MAX_CURSORS {
        let oldest = cursors.keys().min().cloned().expect("not empty");
        cursors.remove(&oldest);
    }
    cursors.insert(
        loc.clone(),
        Cursor {
            rows: rest,
            total,
            version_text: vt.to_owned(),
        },
    );
    Reply::ok(json!({"totalSize": total, "done": false,
                     "nextRecordsUrl": format!("/services/data/{vt}/query/{loc}-{PAGE}"),
                     "records": rows}))
}

/// Handles `GET /query/{locator}-{offset}`.
pub fn more(x: &mut Exec<'_>, locator: &str) -> Reply {
    let Some((loc, offset)) = locator.split_once('-') else {
        return invalid_locator();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid_locator();
    };
    let mut cursors = x.emu.cursors.lock().expect("cursors lock");
    let Some(c) = cursors.get_mut(loc) else {
        return invalid_locator();
    };
    // The cursor keeps rows from `served` on; a page is the next PAGE of them.
    let served = c.total - c.rows.len();
    if offset != served {
        return invalid_locator();
    }
    let take = c.rows.len().min(PAGE);
    let rows: Vec<Value> = c.rows.drain(..take).collect();
    let total = c.total;
    let vt = c.version_text.clone();
    let done = c.rows.is_empty();
    if done {
        cursors.remove(loc);
        return Reply::ok(json!({"totalSize": total, "done": true, "records": rows}));
    }
    Reply::ok(json!({"totalSize": total, "done": false,
                     "nextRecordsUrl": format!("/services/data/{vt}/query/{loc}-{}", offset + take),
                     "records": rows}))
}

fn invalid_locator() -> Reply {
    ApiError::bad("INVALID_QUERY_LOCATOR", "invalid query locator").into()
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn form_decode(s: &str) -> String {
    super::rest::percent_decode(&s.replace('+', " "))
}
