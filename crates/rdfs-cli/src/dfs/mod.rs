//! `rdfs dfs`: HDFS's FsShell commands with its flags, output formats,
//! error texts and exit codes (0 success, 1 when any path failed, 255 for
//! usage errors).

mod acl;
mod copy;
mod format;
mod ls;
mod misc;
mod modify;
mod path;
mod progress;
mod shell;
mod usage;

use crate::generic::{GenericOptions, runtime};

pub use shell::Shell;

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    let (generic, rest) = match GenericOptions::parse(args) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("dfs: {err:#}");
            return 255;
        }
    };
    let Some((command, args)) = rest.split_first() else {
        eprint!("{}", usage::full());
        return 255;
    };
    let Some(spec) = usage::find(command) else {
        eprintln!("{command}: Unknown command");
        if !command.starts_with('-') && usage::find(&format!("-{command}")).is_some() {
            eprintln!("Did you mean -{command}?  This command begins with a dash.");
        }
        eprint!("{}", usage::full());
        return 255;
    };
    let config = match generic.load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{}: {err:#}", &command[1..]);
            return 1;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{}: {err:#}", &command[1..]);
            return 1;
        }
    };
    runtime.block_on(async {
        let mut shell = match Shell::new(config, command) {
            Ok(shell) => shell,
            Err(err) => {
                eprintln!("{}: {err}", &command[1..]);
                return 1;
            }
        };
        shell.run(spec, args.to_vec()).await
    })
}
