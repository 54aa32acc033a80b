//! Who a call acts for: the user a front door received, checked against the
//! proxy-user rules when another user sent it on their behalf, with the
//! groups the namenode resolves and whether that makes them the superuser.
//! HDFS's `ProxyUsers` and `FSPermissionChecker` constructor, in one place
//! every front door goes through.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;

use rdfs_common::config::{Config, ProxyUserConfig};
use rdfs_common::tls::{PeerIdentity, Role};

use crate::edit_log::RpcId;
use crate::error::{NamenodeError, Result};
use crate::groups::{
    GroupCacheConfig, GroupList, GroupSource, Groups, SystemGroups, parse_overrides,
};
use crate::namesystem::Caller;

/// A call as a front door received it, before the namenode decided whom it
/// acts for.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The user the call says it acts for (Hadoop's effective user).
    pub user: String,
    /// The user that sent it for `user`, when another (a proxy user).
    pub real_user: Option<String>,
    /// The peer's address.
    pub address: String,
    pub rpc: Option<RpcId>,
    /// Who the peer's TLS certificate says it is, over mutual TLS: then the
    /// certificate, not what the call claims, is who sent it.
    pub certified: Option<PeerIdentity>,
}

/// A list from config: anything (`*`) or these entries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AnyOf<T: std::hash::Hash + Eq> {
    Any,
    These(HashSet<T>),
}

impl AnyOf<String> {
    fn parse(list: &str) -> Self {
        let items: HashSet<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if items.contains("*") {
            Self::Any
        } else {
            Self::These(items)
        }
    }

    fn contains(&self, item: &str) -> bool {
        match self {
            Self::Any => true,
            Self::These(items) => items.contains(item),
        }
    }
}

/// One address rule: an address, or a network in CIDR notation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, address: IpAddr) -> bool {
        match (self.base, address) {
            (IpAddr::V4(base), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// Where a proxy user may connect from.
#[derive(Debug, Clone)]
enum Hosts {
    Any,
    These(Vec<Network>),
}

impl Hosts {
    /// `*`, addresses, CIDR networks and host names (resolved now, as
    /// HDFS resolves them when it loads the rules).
    fn parse(list: &str) -> std::result::Result<Self, String> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                return Ok(Self::Any);
            }
            if let Some((base, prefix)) = item.split_once('/') {
                let base: IpAddr = base
                    .parse()
                    .map_err(|_| format!("'{item}' is not an address or CIDR network"))?;
                let max = if base.is_ipv4() { 32 } else { 128 };
                let prefix: u8 = prefix
                    .parse()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("'{item}' has a bad prefix length"))?;
                networks.push(Network { base, prefix });
            } else if let Ok(base) = item.parse::<IpAddr>() {
                let prefix = if base.is_ipv4() { 32 } else { 128 };
                networks.push(Network { base, prefix });
            } else {
                use std::net::ToSocketAddrs;
                match (item, 0).to_socket_addrs() {
                    Ok(addresses) => networks.extend(addresses.map(|a| Network {
                        base: a.ip(),
                        prefix: if a.is_ipv4() { 32 } else { 128 },
                    })),
                    Err(err) => {
                        tracing::warn!(host = item, error = %err, "proxy-user host does not resolve; ignored");
                    }
                }
            }
        }
        Ok(Self::These(networks))
    }

    fn allows(&self, address: &str) -> bool {
        match self {
            Self::Any => true,
            Self::These(networks) => address
                .parse::<IpAddr>()
                .ok()
                .map(|a| match a {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
                    v4 => v4,
                })
                .is_some_and(|a| networks.iter().any(|n| n.contains(a))),
        }
    }
}

#[derive(Debug, Clone)]
struct ProxyRule {
    hosts: Hosts,
    users: AnyOf<String>,
    groups: AnyOf<String>,
}

/// The proxy-user rules (`hadoop.proxyuser.<user>.*`).
#[derive(Debug, Clone, Default)]
pub struct ProxyUsers {
    rules: HashMap<String, ProxyRule>,
}

impl ProxyUsers {
    pub fn from_config(
        rules: &BTreeMap<String, ProxyUserConfig>,
    ) -> std::result::Result<Self, String> {
        let mut parsed = HashMap::new();
        for (user, rule) in rules {
            let hosts = Hosts::parse(&rule.hosts)
                .map_err(|e| format!("hadoop.proxyuser.{user}.hosts: {e}"))?;
            parsed.insert(
                user.clone(),
                ProxyRule {
                    hosts,
                    users: AnyOf::parse(&rule.users),
                    groups: AnyOf::parse(&rule.groups),
                },
            );
        }
        Ok(Self { rules: parsed })
    }

    /// Whether `real` may act for `user` (in `groups`) from `address`, in
    /// HDFS's words when not.
    pub fn authorize(
        &self,
        real: &str,
        user: &str,
        groups: &[String],
        address: &str,
    ) -> Result<()> {
        let not_allowed = || {
            NamenodeError::AccessControl(format!(
                "User: {real} is not allowed to impersonate {user}"
            ))
        };
        let rule = self.rules.get(real).ok_or_else(not_allowed)?;
        // `*` in either list allows everyone, as Hadoop's ACLs read it.
        let member = rule.groups == AnyOf::Any || groups.iter().any(|g| rule.groups.contains(g));
        if !(rule.users.contains(user) || member) {
            return Err(not_allowed());
        }
        if !rule.hosts.allows(address) {
            return Err(NamenodeError::AccessControl(format!(
                "Unauthorized connection for super-user: {real} from IP {address}"
            )));
        }
        Ok(())
    }
}

/// Turns origins into callers: groups, superuser, proxy rules.
#[derive(Debug)]
pub struct Identities {
    groups: Groups,
    proxy_users: RwLock<ProxyUsers>,
    /// The user the namenode runs as.
    superuser: String,
    supergroup: String,
}

impl Identities {
    pub fn new(
        config: &Config,
        superuser: &str,
        source: Box<dyn GroupSource>,
    ) -> std::result::Result<Self, String> {
        let security = &config.security;
        let groups = Groups::new(
            parse_overrides(&security.group_mapping_overrides)?,
            source,
            GroupCacheConfig {
                ttl: std::time::Duration::from_secs(security.groups_cache_secs),
                negative_ttl: std::time::Duration::from_secs(security.groups_negative_cache_secs),
            },
        );
        Ok(Self {
            groups,
            proxy_users: RwLock::new(ProxyUsers::from_config(&security.proxy_users)?),
            superuser: superuser.to_string(),
            supergroup: config.namenode.supergroup.clone(),
        })
    }

    /// From the daemon's config, with the system's group database.
    pub fn from_config(config: &Config, superuser: &str) -> std::result::Result<Self, String> {
        Self::new(config, superuser, Box::new(SystemGroups))
    }

    /// The caller `origin` stands for, or why it may not act as that user.
    pub fn caller(&self, mut origin: Origin) -> Result<Caller> {
        if let Some(peer) = origin.certified.take() {
            origin.real_user = Self::certified_real_user(&peer, &origin)?;
        }
        let groups = self.groups.of(&origin.user);
        if let Some(real) = origin.real_user.as_deref().filter(|r| *r != origin.user) {
            self.proxy_users
                .read()
                .authorize(real, &origin.user, &groups, &origin.address)?;
        }
        let superuser = self.is_superuser(&origin.user, &groups);
        Ok(Caller {
            user: origin.user,
            groups,
            superuser,
            real_user: origin.real_user,
            machine: origin.address,
            rpc: origin.rpc,
        })
    }

    /// Over mutual TLS, the user behind a call is the one its certificate
    /// names: a call acting for another user is a proxy call, held to the
    /// proxy-user rules; one claiming another real user is refused. A
    /// namenode's certificate (its peer uploading checkpoints, or failing
    /// over) is trusted to name the user it acts as.
    fn certified_real_user(peer: &PeerIdentity, origin: &Origin) -> Result<Option<String>> {
        if peer.role == Role::Namenode {
            return Ok(origin.real_user.clone());
        }
        if let Some(real) = origin.real_user.as_deref()
            && real != peer.name
        {
            return Err(NamenodeError::AccessControl(format!(
                "the call claims to come from user {real}, but its TLS certificate is {peer}"
            )));
        }
        Ok((origin.user != peer.name).then(|| peer.name.clone()))
    }

    fn is_superuser(&self, user: &str, groups: &[String]) -> bool {
        user == self.superuser || groups.contains(&self.supergroup)
    }

    /// The namenode itself acting (its trash emptier): the superuser.
    pub fn namenode(&self) -> Caller {
        Caller::new(
            &self.superuser,
            self.groups.of(&self.superuser),
            true,
            "namenode",
        )
    }

    /// A user's groups, as `rdfs groups` prints them.
    pub fn groups_of(&self, user: &str) -> GroupList {
        self.groups.of(user)
    }

    /// Forgets cached groups (`-refreshUserToGroupsMappings`).
    pub fn refresh_groups(&self) {
        self.groups.refresh();
    }

    /// Replaces the proxy-user rules (`-refreshSuperUserGroupsConfiguration`).
    pub fn set_proxy_users(&self, rules: ProxyUsers) {
        *self.proxy_users.write() = rules;
    }
}

/// A shared [`Identities`].
pub type SharedIdentities = Arc<Identities>;

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(hosts: &str, groups: &str, users: &str) -> ProxyUsers {
        ProxyUsers::from_config(&BTreeMap::from([(
            "hue".to_string(),
            ProxyUserConfig {
                hosts: hosts.into(),
                groups: groups.into(),
                users: users.into(),
            },
        )]))
        .expect("rules")
    }

    #[test]
    fn a_proxy_acts_for_members_of_its_groups_from_its_hosts() {
        let proxy = rules("10.0.0.0/8,127.0.0.1", "staff", "carol");
        let staff = vec!["staff".to_string()];
        proxy
            .authorize("hue", "alice", &staff, "10.1.2.3")
            .expect("a member of staff, from the network");
        proxy
            .authorize("hue", "carol", &[], "127.0.0.1")
            .expect("a listed user");
        let refused = proxy
            .authorize("hue", "bob", &[], "127.0.0.1")
            .expect_err("bob");
        assert_eq!(
            refused.to_string(),
            "User: hue is not allowed to impersonate bob"
        );
        let refused = proxy
            .authorize("hue", "alice", &staff, "192.168.1.1")
            .expect_err("host");
        assert_eq!(
            refused.to_string(),
            "Unauthorized connection for super-user: hue from IP 192.168.1.1"
        );
        proxy
            .authorize("oozie", "alice", &staff, "127.0.0.1")
            .expect_err("no rule for oozie");
    }

    #[test]
    fn wildcards_and_bad_networks() {
        rules("*", "*", "")
            .authorize("hue", "anyone", &[], "::1")
            .expect("any");
        assert!(
            ProxyUsers::from_config(&BTreeMap::from([(
                "hue".to_string(),
                ProxyUserConfig {
                    hosts: "10.0.0.0/40".into(),
                    ..Default::default()
                },
            )]))
            .is_err()
        );
    }
}
