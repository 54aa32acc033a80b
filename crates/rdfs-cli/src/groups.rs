//! `rdfs groups [USER ...]`: each user's groups as the namenode resolves
//! them, printed as `hdfs groups` does (`alice : alice staff`).

use anyhow::Result;

use rdfs_client::DfsClient;

use crate::generic::{GenericOptions, client_settings, client_user, runtime};

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    match run(args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("groups: {err:#}");
            1
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let (generic, users) = GenericOptions::parse_anywhere(args)?;
    let config = generic.load()?;
    let namenodes = crate::generic::namenode_addresses(&config)?;
    let user = client_user(&config);
    let users = if users.is_empty() {
        vec![user.clone()]
    } else {
        users
    };
    runtime()?.block_on(async {
        let client = DfsClient::new_nameservice(&namenodes, &user, client_settings(&config))?;
        for name in &users {
            let groups = client.get_groups(name).await?;
            println!("{}", line(name, &groups));
        }
        Ok(())
    })
}

fn line(user: &str, groups: &[String]) -> String {
    let mut out = format!("{user} :");
    for group in groups {
        out.push(' ');
        out.push_str(group);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_look_like_hdfs_groups() {
        assert_eq!(
            super::line("alice", &["alice".into(), "staff".into()]),
            "alice : alice staff"
        );
        assert_eq!(super::line("ghost", &[]), "ghost :");
    }
}
