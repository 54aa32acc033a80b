//! `rdfs`: one binary for every rdfs daemon and tool, with HDFS's command
//! names and flags (`rdfs namenode -format`, `rdfs dfs -ls /`, `rdfs fsck /`).

mod balancer;
mod bench;
mod ca;
mod daemon;
mod debug;
mod dfs;
mod dfsadmin;
mod fsck;
mod generic;
mod getconf;
mod groups;
mod haadmin;
mod report;

use std::process::ExitCode;

use clap::Parser;

/// The rdfs distributed filesystem: HDFS's model and commands.
#[derive(Parser, Debug)]
#[command(name = "rdfs", version, disable_help_subcommand = true)]
#[command(
    after_help = "Generic options (-D key=value, -fs URI, -conf FILE) go after the command, as in Hadoop."
)]
enum Cli {
    /// Run the namenode, or format its name directories (-format [-force] [-clusterid CID]),
    /// copy another HA namenode's image (-bootstrapStandby [-force]) or move a namenode's
    /// edits onto the journalnodes (-initializeSharedEdits [-force]).
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Namenode { args: Vec<String> },
    /// Run a journalnode: it keeps the edit log an HA nameservice's namenodes share.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Journalnode { args: Vec<String> },
    /// HA administration (-getServiceState, -getAllServiceState, -transitionToActive,
    /// -transitionToStandby, -failover), as `hdfs haadmin`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Haadmin { args: Vec<String> },
    /// Run a datanode.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Datanode { args: Vec<String> },
    /// Run a filesystem command (-ls, -put, -get, -cat, ...), as `hdfs dfs`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Dfs { args: Vec<String> },
    /// Check the health of the files under a path, as `hdfs fsck`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Fsck { args: Vec<String> },
    /// Administration commands (-report), as `hdfs dfsadmin`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Dfsadmin { args: Vec<String> },
    /// Move replicas until every datanode's utilization is near the average
    /// (-threshold PCT), as `hdfs balancer`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Balancer { args: Vec<String> },
    /// Benchmarks that print figures (namespace, nn).
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Bench { args: Vec<String> },
    /// Debugging tools (recoverLease -path PATH [-retries N]), as `hdfs debug`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Debug { args: Vec<String> },
    /// The groups the namenode resolves for users (the current user when
    /// none is named), as `hdfs groups`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Groups { args: Vec<String> },
    /// Print configuration (-confKey KEY, -dump), as `hdfs getconf`.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Getconf { args: Vec<String> },
    /// The cluster's certificate authority for mutual TLS: `ca init` makes
    /// it, `ca issue -role ROLE -name NAME` a certificate for a daemon or user.
    #[command(allow_hyphen_values = true, disable_help_flag = true)]
    Ca { args: Vec<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli {
        Cli::Namenode { args } => daemon::namenode(args),
        Cli::Datanode { args } => daemon::datanode(args),
        Cli::Journalnode { args } => daemon::journalnode(args),
        Cli::Haadmin { args } => haadmin::main(args),
        Cli::Dfs { args } => dfs::main(args),
        Cli::Fsck { args } => fsck::main(args),
        Cli::Dfsadmin { args } => dfsadmin::main(args),
        Cli::Getconf { args } => getconf::main(args),
        Cli::Groups { args } => groups::main(args),
        Cli::Bench { args } => bench::main(args),
        Cli::Balancer { args } => balancer::main(args),
        Cli::Debug { args } => debug::main(args),
        Cli::Ca { args } => ca::main(args),
    };
    ExitCode::from(code)
}
