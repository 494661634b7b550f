//! `provsync emulate salesforce`: a Salesforce org (OAuth, REST, collections,
//! composite, graph, Bulk 2.0, query, Apex REST, Metadata value sets) with its limits,
//! faults and stats, per `docs/salesforce-model.md`, until Ctrl-C or SIGTERM (both
//! write a snapshot of `--state`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::out::{note, outln};
use anyhow::Context as _;
use clap::Args;
use provsync_emulators::salesforce::schema::{DuplicateAction, DuplicateRule};
use provsync_emulators::salesforce::{self, auth::JwtKey, Emu, Faults, SalesforceConfig, Schema};

/// Arguments of `emulate salesforce`.
#[derive(Debug, Args)]
pub struct SalesforceArgs {
    /// Address to listen on (port 0: any free port; the URL is the first line on stdout).
    #[arg(long, default_value = "127.0.0.1:8093")]
    pub listen: String,
    /// Directory keeping the org's data across restarts (default: in memory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// A describe-style schema file replacing the default provider model.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Connected app consumer key.
    #[arg(long, default_value = "provsync")]
    pub client_id: String,
    /// Connected app consumer secret (client credentials flow).
    #[arg(
        long,
        env = "PROVSYNC_SF_EMULATOR_CLIENT_SECRET",
        default_value = "provsync-secret",
        hide_env_values = true
    )]
    pub client_secret: String,
    /// PEM X.509 certificate or public key checking RS256 JWT bearer assertions.
    #[arg(long)]
    pub jwt_cert: Option<PathBuf>,
    /// The integration user (`sub` of JWT assertions).
    #[arg(long, default_value = "integration@provsync.example")]
    pub username: String,
    /// Access token lifetime, seconds.
    #[arg(long, default_value_t = 7200)]
    pub token_ttl_secs: u64,
    /// API calls allowed per budget window.
    #[arg(long, default_value_t = 100_000)]
    pub api_budget: u64,
    /// Rolling window of the API budget, seconds.
    #[arg(long, default_value_t = 86_400)]
    pub budget_window_secs: u64,
    /// Long-running calls allowed at once.
    #[arg(long, default_value_t = 25)]
    pub max_long_calls: usize,
    /// A call running this many seconds counts as long.
    #[arg(long, default_value_t = 20)]
    pub long_call_secs: u64,
    /// Milliseconds added to every call.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share (0..1) of calls answered 503.
    #[arg(long = "fail-503", default_value_t = 0.0)]
    pub fail_503: f64,
    /// Share (0..1) of record writes with a parent refused with UNABLE_TO_LOCK_ROW.
    #[arg(long, default_value_t = 0.0)]
    pub lock_errors: f64,
    /// Milliseconds each 200-row chunk of a Bulk API 2.0 job takes to process.
    #[arg(long, default_value_t = 0)]
    pub bulk_chunk_ms: u64,
    /// Seed of the fault rolls.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Activates a duplicate rule, `Object:Field[,Field...][:block]` (repeatable):
    /// a record whose fields all equal another record's answers DUPLICATES_DETECTED;
    /// the rule alerts (allowSave=true in the duplicate rule header saves anyway)
    /// unless `:block`. Named `{Object}_Duplicate_Rule` (`_2`, ... for more).
    #[arg(long = "duplicate-rule", value_name = "RULE")]
    pub duplicate_rules: Vec<String>,
    /// Hides a field from the integration user, `Object.Field` (repeatable), as
    /// field-level security does: describe omits it, the API answers as if it did
    /// not exist.
    #[arg(long = "hide-field", value_name = "FIELD")]
    pub hidden_fields: Vec<String>,
}

/// A `--duplicate-rule` value: object, and the rule (its name numbered by `n`,
/// the object's count of rules before it).
fn duplicate_rule(text: &str, n: usize) -> anyhow::Result<(String, DuplicateRule)> {
    let mut parts = text.split(':');
    let (Some(object), Some(fields)) = (parts.next(), parts.next()) else {
        anyhow::bail!("--duplicate-rule {text:?}: expected Object:Field[,Field...][:block]");
    };
    let action = match parts.next() {
        None => DuplicateAction::Alert,
        Some("block") => DuplicateAction::Block,
        Some(other) => anyhow::bail!("--duplicate-rule {text:?}: unknown action {other:?}"),
    };
    let object = object.trim().to_owned();
    let name = match n {
        0 => format!("{object}_Duplicate_Rule"),
        n => format!("{object}_Duplicate_Rule_{}", n + 1),
    };
    let fields = fields
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    Ok((
        object,
        DuplicateRule {
            name,
            fields,
            action,
        },
    ))
}

impl SalesforceArgs {
    /// The flags' defaults, as `provsync emulate salesforce` with no flag has them.
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: SalesforceArgs,
        }
        Wrapper::parse_from(["salesforce"]).args
    }

    /// The emulator configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<SalesforceConfig> {
        let schema = match &self.schema {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                Schema::parse(&text).with_context(|| format!("schema {}", p.display()))?
            }
            None => Schema::default_org(),
        };
        let mut schema = schema;
        let mut per_object: std::collections::HashMap<String, usize> = Default::default();
        for text in &self.duplicate_rules {
            let object = text
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let n = per_object.entry(object).or_default();
            let (object, rule) = duplicate_rule(text, *n)?;
            *n += 1;
            schema
                .add_duplicate_rule(&object, rule)
                .with_context(|| format!("--duplicate-rule {text}"))?;
        }
        for text in &self.hidden_fields {
            let Some((object, field)) = text.split_once('.') else {
                anyhow::bail!("--hide-field {text:?}: expected Object.Field");
            };
            schema
                .hide_field(object, field)
                .with_context(|| format!("--hide-field {text}"))?;
        }
        let jwt_key = match &self.jwt_cert {
            Some(p) => {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                Some(
                    JwtKey::from_pem(&pem)
                        .with_context(|| format!("--jwt-cert {}", p.display()))?,
                )
            }
            None => None,
        };
        let faults = Faults {
            latency_ms: self.latency_ms,
            fail_503: self.fail_503,
            lock_errors: self.lock_errors,
            bulk_chunk_ms: self.bulk_chunk_ms,
        };
        faults.validate()?;
        Ok(SalesforceConfig {
            schema,
            state_dir: self.state.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            username: self.username.clone(),
            jwt_key,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            api_budget: self.api_budget,
            budget_window: Duration::from_secs(self.budget_window_secs),
            max_long_calls: self.max_long_calls,
            long_call: Duration::from_secs(self.long_call_secs),
            faults,
            seed: self.seed,
        })
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the emulator until Ctrl-C or SIGTERM.
pub async fn emulate(a: SalesforceArgs) -> anyhow::Result<ExitCode> {
    let cfg = a.config()?;
    let emu = Emu::new(cfg).context("cannot open the emulator's state")?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    // Scripts read the address from stdout; a closed stdout must not stop the server.
    let _ = outln!("listening on http://{addr}");
    note!(
        "salesforce emulator: client id {}, user {}, budget {} calls per {} s{}",
        a.client_id,
        a.username,
        a.api_budget,
        a.budget_window_secs,
        a.state
            .as_ref()
            .map(|d| format!(", state in {}", d.display()))
            .unwrap_or_default()
    );
    salesforce::serve(emu, listener, async {
        stop_signal().await;
        note!("salesforce emulator stopping");
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
