//! `rdfs getconf -confKey KEY | -namenodes | -dump`: the configuration a
//! command would run with (file, then `-D` overrides, then defaults).

use anyhow::{Result, bail};

use crate::generic::GenericOptions;

const USAGE: &str = "Usage: rdfs getconf [generic options]\n\t[-namenodes]\tnamenode RPC address\n\t[-confKey section.key]\tone key's value\n\t[-dump]\tthe whole effective configuration as TOML";

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    match run(args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("getconf: {err:#}");
            255
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let (generic, rest) = GenericOptions::parse_anywhere(args)?;
    let config = generic.load()?;
    match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["-namenodes"] => println!("{}", config.namenode_rpc_address()?),
        ["-dump"] => print!("{}", config.to_toml()),
        ["-confKey", key] => {
            let table: toml::Table = toml::from_str(&config.to_toml())?;
            let (section, field) = key.split_once('.').unwrap_or((key, ""));
            match table.get(section).and_then(|s| s.get(field)) {
                Some(toml::Value::String(text)) => println!("{text}"),
                Some(value) => println!("{value}"),
                None => bail!("Configuration {key} is missing."),
            }
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}
