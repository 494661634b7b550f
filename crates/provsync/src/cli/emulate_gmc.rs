//! `provsync emulate gmc`: serves GetDoctorsForDB (SOAP 1.1/1.2) from a generated
//! register of doctors across designated bodies until stopped.

use std::process::ExitCode;
use std::time::Duration;

use super::out::outln;
use anyhow::Context as _;
use clap::Args;
use provsync_emulators::gmc::{self, Faults, GmcEmulator, RegisterSpec};

/// Arguments of `emulate gmc`.
#[derive(Debug, Args)]
pub struct GmcArgs {
    /// Address to listen on (port 0 picks a free one; the URL is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
    /// Designated bodies in the register (the first three are GMC's documented
    /// example codes 1-AIIDHJ, 1-AIIDMQ, 1-AIIDWA; the URL and codes are printed).
    #[arg(long, default_value_t = 13)]
    pub bodies: u32,
    /// Doctors per body on night 0.
    #[arg(long, default_value_t = 1000)]
    pub doctors_per_body: u32,
    /// Seed of the register.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Night of the register (each night moves, adds and removes doctors).
    #[arg(long, default_value_t = 0)]
    pub night: u32,
    /// Accepted user name.
    #[arg(
        long,
        env = "PROVSYNC_GMC_EMULATOR_USERNAME",
        default_value = "provsync"
    )]
    pub username: String,
    /// Accepted password.
    #[arg(
        long,
        env = "PROVSYNC_GMC_EMULATOR_PASSWORD",
        default_value = "emulator",
        hide_env_values = true
    )]
    pub password: String,
    /// Share (0..=1) of calls answered with ReturnCode 98.
    #[arg(long, default_value_t = 0.0)]
    pub error_98_share: f64,
    /// Answer every call with ReturnCode 99.
    #[arg(long)]
    pub always_99: bool,
    /// A body answered with an empty list (repeatable).
    #[arg(long = "empty-body")]
    pub empty_bodies: Vec<String>,
    /// A body answered with malformed XML (repeatable).
    #[arg(long = "malformed-body")]
    pub malformed_bodies: Vec<String>,
    /// A body the account may not see: ReturnCode 81 (repeatable).
    #[arg(long = "deny-body")]
    pub denied_bodies: Vec<String>,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// `BODY=CODE`: answer BODY with ReturnCode CODE (80, 81, 98 or 99) on every
    /// call (repeatable).
    #[arg(long = "body-code", value_parser = body_code)]
    pub body_codes: Vec<(String, String)>,
    /// `BODY=GMC[,GMC...]`: answer BODY with exactly these doctors, by GMC number of
    /// the register's numbering (from 1000000); `BODY=` lists none (repeatable).
    #[arg(long = "body-list", value_parser = body_list)]
    pub body_lists: Vec<(String, Vec<String>)>,
}

fn body_code(arg: &str) -> Result<(String, String), String> {
    let (body, code) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected BODY=CODE, got {arg:?}"))?;
    if !gmc::SCRIPTED_CODES.contains(&code) {
        return Err(format!(
            "ReturnCode {code:?} cannot be scripted; one of {}",
            gmc::SCRIPTED_CODES.join(", ")
        ));
    }
    Ok((body.to_owned(), code.to_owned()))
}

fn body_list(arg: &str) -> Result<(String, Vec<String>), String> {
    let (body, list) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected BODY=GMC[,GMC...], got {arg:?}"))?;
    let numbers: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = numbers
        .iter()
        .find(|n| n.len() != 7 || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("GMC number {bad:?} is not 7 digits from 1000000"));
    }
    Ok((body.to_owned(), numbers))
}

/// Runs the emulator until the process is stopped.
pub async fn emulate(a: GmcArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.error_98_share) {
        anyhow::bail!(
            "--error-98-share must be between 0 and 1, got {}",
            a.error_98_share
        );
    }
    let emu = GmcEmulator {
        register: RegisterSpec {
            bodies: a.bodies,
            doctors_per_body: a.doctors_per_body,
            seed: a.seed,
            night: a.night,
        },
        username: a.username,
        password: a.password,
        faults: Faults {
            error_98_share: a.error_98_share,
            always_99: a.always_99,
            empty_bodies: a.empty_bodies,
            malformed_bodies: a.malformed_bodies,
            denied_bodies: a.denied_bodies,
            delay: Duration::from_millis(a.delay_ms),
            body_codes: a.body_codes,
            body_lists: a.body_lists,
        },
    };
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    // Scripts read the address from stdout; a closed stdout must not stop the server.
    let _ = outln!("gmc emulator listening on {}", gmc::service_url(addr));
    let _ = outln!("bodies: {}", emu.register.body_codes().join(","));
    gmc::serve(emu, listener).await?;
    Ok(ExitCode::SUCCESS)
}
