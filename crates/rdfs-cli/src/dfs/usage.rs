//! The commands `rdfs dfs` knows and their usage lines, printed as Hadoop
//! prints them.

pub struct CommandSpec {
    /// The name as typed, with its dash.
    pub name: &'static str,
    pub usage: &'static str,
}

/// Sorted by name, as Hadoop lists them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "-appendToFile",
        usage: "[-hflush|-hsync] <localsrc> ... <dst>",
    },
    CommandSpec {
        name: "-cat",
        usage: "<src> ...",
    },
    CommandSpec {
        name: "-chgrp",
        usage: "[-R] GROUP PATH...",
    },
    CommandSpec {
        name: "-chmod",
        usage: "[-R] <MODE[,MODE]... | OCTALMODE> PATH...",
    },
    CommandSpec {
        name: "-chown",
        usage: "[-R] [OWNER][:[GROUP]] PATH...",
    },
    CommandSpec {
        name: "-copyFromLocal",
        usage: "[-f] [-p] [-d] <localsrc> ... <dst>",
    },
    CommandSpec {
        name: "-copyToLocal",
        usage: "[-f] [-p] <src> ... <localdst>",
    },
    CommandSpec {
        name: "-count",
        usage: "[-q] [-h] [-v] <path> ...",
    },
    CommandSpec {
        name: "-cp",
        usage: "[-f] [-p] [-d] <src> ... <dst>",
    },
    CommandSpec {
        name: "-du",
        usage: "[-s] [-h] [-v] [-x] <path> ...",
    },
    CommandSpec {
        name: "-expunge",
        usage: "[-immediate] [-fs <path>]",
    },
    CommandSpec {
        name: "-get",
        usage: "[-f] [-p] <src> ... <localdst>",
    },
    CommandSpec {
        name: "-getfacl",
        usage: "[-R] <path>",
    },
    CommandSpec {
        name: "-help",
        usage: "[cmd ...]",
    },
    CommandSpec {
        name: "-ls",
        usage: "[-C] [-d] [-h] [-R] [-t] [-S] [-r] [-u] [<path> ...]",
    },
    CommandSpec {
        name: "-mkdir",
        usage: "[-p] <path> ...",
    },
    CommandSpec {
        name: "-mv",
        usage: "<src> ... <dst>",
    },
    CommandSpec {
        name: "-put",
        usage: "[-f] [-p] [-d] [-hflush|-hsync] <localsrc> ... <dst>",
    },
    CommandSpec {
        name: "-rm",
        usage: "[-f] [-r|-R] [-skipTrash] <src> ...",
    },
    CommandSpec {
        name: "-rmdir",
        usage: "[--ignore-fail-on-non-empty] <dir> ...",
    },
    CommandSpec {
        name: "-setfacl",
        usage: "[-R] [{-b|-k} {-m|-x <acl_spec>} <path>]|[--set <acl_spec> <path>]",
    },
    CommandSpec {
        name: "-setrep",
        usage: "[-R] [-w] <rep> <path> ...",
    },
    CommandSpec {
        name: "-stat",
        usage: "[format] <path> ...",
    },
    CommandSpec {
        name: "-tail",
        usage: "[-f] [-s <sleep interval>] <file>",
    },
    CommandSpec {
        name: "-test",
        usage: "-[defsz] <path>",
    },
    CommandSpec {
        name: "-touchz",
        usage: "<path> ...",
    },
    CommandSpec {
        name: "-truncate",
        usage: "[-w] <length> <path> ...",
    },
    CommandSpec {
        name: "-usage",
        usage: "[cmd ...]",
    },
];

pub fn find(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The usage block of every command, ending with an empty line.
pub fn full() -> String {
    let mut out = String::from("Usage: rdfs dfs [generic options]\n");
    for command in COMMANDS {
        out.push_str(&format!("\t[{} {}]\n", command.name, command.usage));
    }
    out.push_str(
        "\nGeneric options supported are:\n\
         -conf <configuration file>        specify an application configuration file\n\
         -D <property=value>               define a value for a given property\n\
         -fs <hdfs://namenode:port>        specify default filesystem URL to use, overrides 'fs.defaultFS' property from configurations.\n\
         \nThe general command line syntax is:\ncommand [genericOptions] [commandOptions]\n\n",
    );
    out
}

/// `Usage: rdfs dfs [generic options] -cmd USAGE`.
pub fn instance(spec: &CommandSpec) -> String {
    format!(
        "Usage: rdfs dfs [generic options] {} {}",
        spec.name, spec.usage
    )
}
