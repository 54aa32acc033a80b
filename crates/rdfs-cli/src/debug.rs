//! `rdfs debug`: `recoverLease -path PATH [-retries N]`, as `hdfs debug`,
//! for closing a file whose writer died without waiting for the lease's
//! hard limit.

use std::time::Duration;

use anyhow::{Result, bail};

use rdfs_client::DfsClient;
use rdfs_common::ExceptionKind;

use crate::generic::{GenericOptions, client_user, runtime};

const USAGE: &str = "Usage: rdfs debug <command> [options]\n\nrecoverLease -path <path> [-retries <num-retries>]\n\n  Recover the lease on the specified path.  The path must reside on an\n  HDFS filesystem.  The default number of retries is 1.";

/// Between attempts, as `hdfs debug` waits.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("debug: {err:#}");
            255
        }
    }
}

struct Options {
    path: String,
    retries: u32,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut path = None;
    let mut retries = 1;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-path" => path = rest.next().cloned(),
            "-retries" => {
                let Some(value) = rest.next() else {
                    bail!("-retries needs a number");
                };
                retries = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        anyhow::anyhow!("Failed to parse the argument to -retries: {value}")
                    })?;
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let Some(path) = path else {
        bail!("You must supply a -path argument to recoverLease.");
    };
    Ok(Options { path, retries })
}

fn run(args: Vec<String>) -> Result<u8> {
    let (generic, rest) = GenericOptions::parse_anywhere(args)?;
    let Some(command) = rest.first() else {
        eprintln!("{USAGE}");
        return Ok(1);
    };
    if command != "recoverLease" {
        eprintln!("Command '{command}' not found.\n{USAGE}");
        return Ok(1);
    }
    let options = parse(&rest[1..])?;
    let config = generic.load()?;
    let namenodes = crate::generic::namenode_addresses(&config)?;
    let user = client_user(&config);
    let settings = crate::generic::client_settings(&config);
    let path = crate::generic::absolute_path(&config, &options.path);
    runtime()?.block_on(async {
        let client = DfsClient::new_nameservice(&namenodes, &user, settings)?;
        let mut attempt = 0;
        loop {
            match client.recover_lease(&path).await {
                Ok(true) => {
                    println!("recoverLease SUCCEEDED on {}", options.path);
                    return Ok(0);
                }
                Ok(false) => eprintln!("recoverLease returned false."),
                Err(err) if err.is(ExceptionKind::FileNotFound) => {
                    eprintln!("recoverLease got exception: {err}");
                    eprintln!("Giving up on recoverLease for {} after 1 try", options.path);
                    return Ok(1);
                }
                Err(err) => eprintln!("recoverLease got exception: {err}"),
            }
            attempt += 1;
            if attempt >= options.retries {
                break;
            }
            eprintln!("Retrying in {} ms...", RETRY_PAUSE.as_millis());
            tokio::time::sleep(RETRY_PAUSE).await;
            eprintln!("Retry #{attempt}");
        }
        let tries = if options.retries == 1 { "try" } else { "tries" };
        eprintln!(
            "Giving up on recoverLease for {} after {} {tries}.",
            options.path, options.retries
        );
        Ok(1)
    })
}
