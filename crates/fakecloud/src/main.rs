//! `fakecloud serve`: runs the test double for local demos of hikyaku,
//! prints its endpoints and client credentials, and waits for Ctrl-C.

use std::process::ExitCode;

use fakecloud::{FakeCloud, Options, Ports};

const USAGE: &str = "usage: fakecloud serve [--ca-out FILE] [--interval SECS] [--tenant NAME]...
                       [--https-port N] [--exchange-port N] [--gmail-port N] [--gmail-smtps-port N]
Ports default to free ephemeral ports on 127.0.0.1.";

fn parse_args(args: &[String]) -> Result<(Options, Ports, Option<String>), String> {
    let mut opts = Options::default();
    let mut ports = Ports::default();
    let mut ca_out = None;
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("serve") => {}
        _ => return Err(USAGE.to_owned()),
    }
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--ca-out" => ca_out = Some(value()?),
            "--interval" => {
                opts.device_poll_interval_secs =
                    value()?.parse().map_err(|e| format!("--interval: {e}"))?;
            }
            "--tenant" => opts.tenants.push(value()?),
            "--https-port" => ports.https = port(arg, value()?)?,
            "--exchange-port" => ports.exchange_smtp = port(arg, value()?)?,
            "--gmail-port" => ports.gmail_smtp = port(arg, value()?)?,
            "--gmail-smtps-port" => ports.gmail_smtps = port(arg, value()?)?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((opts, ports, ca_out))
}

fn port(flag: &str, v: String) -> Result<u16, String> {
    v.parse().map_err(|e| format!("{flag}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, ports, ca_out) = match parse_args(&args) {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(opts, ports, ca_out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fakecloud: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options, ports: Ports, ca_out: Option<String>) -> anyhow::Result<()> {
    let cloud = FakeCloud::start_with_ports(opts, ports).await?;
    if let Some(path) = &ca_out {
        std::fs::write(path, cloud.ca_pem())?;
        println!("CA certificate written to {path}");
    } else {
        println!("CA certificate:\n{}", cloud.ca_pem());
    }
    let o = cloud.options();
    println!("HTTPS base            {}", cloud.base_url());
    println!("Microsoft endpoint    {}", cloud.entra_endpoint("common"));
    println!("Microsoft client id   {}", o.ms_client_id);
    println!("Device login page     {}/devicelogin", cloud.base_url());
    println!("Google auth URL       {}", cloud.google_auth_url());
    println!("Google token URL      {}", cloud.google_token_url());
    println!("Google revoke URL     {}", cloud.google_revoke_url());
    println!("Google client id      {}", o.google_client_id);
    println!("Google client secret  {}", o.google_client_secret);
    println!(
        "Exchange SMTP         {} (STARTTLS)",
        cloud.exchange_smtp_addr()
    );
    println!(
        "Gmail SMTP            {} (STARTTLS)",
        cloud.gmail_smtp_addr()
    );
    println!(
        "Gmail SMTPS           {} (implicit TLS)",
        cloud.gmail_smtps_addr()
    );
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    let inbox = cloud.inbox();
    println!("Stopping; {} message(s) were received.", inbox.len());
    Ok(())
}
