//! Which groups a user is in, as the namenode sees it (HDFS's `Groups`
//! over its Unix mapping): static overrides from config first, then the
//! operating system's group database through the C library (no process
//! spawned per lookup), cached with an expiry; users the system does not
//! know are remembered briefly too, so a stream of calls from one unknown
//! name does not hammer the database.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A user's groups, primary group first.
pub type GroupList = Arc<[String]>;

/// Where group lists come from when not overridden: the system's database
/// in the daemon, a table in tests.
pub trait GroupSource: Send + Sync {
    /// The user's groups, primary first; empty when the user is unknown.
    fn groups(&self, user: &str) -> std::io::Result<Vec<String>>;
}

/// The C library's user and group database (`/etc/group`, or whatever NSS
/// is configured to read).
#[derive(Debug, Default)]
pub struct SystemGroups;

impl GroupSource for SystemGroups {
    fn groups(&self, user: &str) -> std::io::Result<Vec<String>> {
        let Ok(name) = CString::new(user) else {
            return Ok(Vec::new());
        };
        let Some(primary) = primary_gid(&name)? else {
            return Ok(Vec::new());
        };
        let mut gids = member_gids(&name, primary);
        // Primary first, then the others once each in the system's order.
        gids.retain(|g| *g != primary);
        gids.insert(0, primary);
        let mut names = Vec::with_capacity(gids.len());
        for gid in gids {
            if let Some(group) = group_name(gid)?
                && !names.contains(&group)
            {
                names.push(group);
            }
        }
        Ok(names)
    }
}

fn buffer_len(kind: libc::c_int) -> usize {
    // SAFETY: sysconf reads a constant; -1 means no fixed size.
    let len = unsafe { libc::sysconf(kind) };
    usize::try_from(len).unwrap_or(16 * 1024).max(1024)
}

fn primary_gid(name: &CStr) -> std::io::Result<Option<libc::gid_t>> {
    let mut buffer = vec![0u8; buffer_len(libc::_SC_GETPW_R_SIZE_MAX)];
    loop {
        // SAFETY: every pointer refers to memory owned here and alive for
        // the call; getpwnam_r writes only within `buffer`.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let status = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        match status {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(entry.pw_gid)),
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 2, 0),
            // Unknown users are reported as these by some NSS modules.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => return Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

fn member_gids(name: &CStr, primary: libc::gid_t) -> Vec<libc::gid_t> {
    let mut gids: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = libc::c_int::try_from(gids.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `gids` holds `count` entries; getgrouplist writes at most
        // that many and reports the number it needs when it is too few.
        let status =
            unsafe { libc::getgrouplist(name.as_ptr(), primary, gids.as_mut_ptr(), &mut count) };
        let count = usize::try_from(count).unwrap_or(0);
        if status >= 0 {
            gids.truncate(count);
            return gids;
        }
        if count <= gids.len() || count > 1 << 16 {
            gids.truncate(0);
            return vec![primary];
        }
        gids.resize(count, 0);
    }
}

fn group_name(gid: libc::gid_t) -> std::io::Result<Option<String>> {
    let mut buffer = vec![0u8; buffer_len(libc::_SC_GETGR_R_SIZE_MAX)];
    loop {
        // SAFETY: as in `primary_gid`.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let status = unsafe {
            libc::getgrgid_r(
                gid,
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        match status {
            0 if found.is_null() => return Ok(None),
            0 => {
                // SAFETY: on success gr_name points at a NUL-terminated
                // string inside `buffer`.
                let name = unsafe { CStr::from_ptr(entry.gr_name) };
                return Ok(Some(name.to_string_lossy().into_owned()));
            }
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 2, 0),
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => return Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

/// How long answers are kept.
#[derive(Debug, Clone, Copy)]
pub struct GroupCacheConfig {
    /// `hadoop.security.groups.cache.secs`.
    pub ttl: Duration,
    /// `hadoop.security.groups.negative-cache.secs`; zero keeps no
    /// negative answers.
    pub negative_ttl: Duration,
}

impl Default for GroupCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
        }
    }
}

/// Static entries in `hadoop.user.group.static.mapping.overrides` syntax:
/// `user1=group1,group2;user2=;` (a user with no groups). HDFS's default,
/// `dr.who=;`, keeps the anonymous web user out of every group.
pub fn parse_overrides(spec: &str) -> Result<HashMap<String, GroupList>, String> {
    let mut overrides = HashMap::new();
    for entry in spec.split(';').filter(|e| !e.is_empty()) {
        let mut parts = entry.split('=').filter(|p| !p.is_empty());
        let (Some(user), groups, None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "Configuration hadoop.user.group.static.mapping.overrides is invalid: {entry:?} is not user=group1,group2"
            ));
        };
        let groups: Vec<String> = groups
            .unwrap_or("")
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        overrides.insert(user.to_string(), groups.into());
    }
    Ok(overrides)
}

struct Cached {
    groups: GroupList,
    at: Instant,
}

/// Users' groups: overrides, then a cache over a [`GroupSource`].
pub struct Groups {
    overrides: HashMap<String, GroupList>,
    source: Box<dyn GroupSource>,
    config: GroupCacheConfig,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("overrides", &self.overrides.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Cached entries beyond which expired ones are swept out.
const SWEEP_AT: usize = 4096;

impl Groups {
    pub fn new(
        overrides: HashMap<String, GroupList>,
        source: Box<dyn GroupSource>,
        config: GroupCacheConfig,
    ) -> Self {
        Self {
            overrides,
            source,
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The groups of `user`, primary first; empty for a user the system
    /// does not know (logged, as HDFS warns, and then treated as in no
    /// group).
    pub fn of(&self, user: &str) -> GroupList {
        if let Some(groups) = self.overrides.get(user) {
            return Arc::clone(groups);
        }
        let now = Instant::now();
        if let Some(cached) = self.cache.lock().get(user) {
            let ttl = if cached.groups.is_empty() {
                self.config.negative_ttl
            } else {
                self.config.ttl
            };
            if now.duration_since(cached.at) < ttl {
                return Arc::clone(&cached.groups);
            }
        }
        // Looked up outside the lock: the database may be slow (LDAP).
        let started = Instant::now();
        let groups: GroupList = match self.source.groups(user) {
            Ok(groups) => groups.into(),
            Err(err) => {
                tracing::warn!(user, error = %err, "group lookup failed; the user is in no group");
                Vec::new().into()
            }
        };
        let took = started.elapsed();
        if took > Duration::from_secs(5) {
            tracing::warn!(user, took_ms = took.as_millis() as u64, "slow group lookup");
        }
        if groups.is_empty() {
            tracing::warn!(user, "No groups found for user {user}");
            if self.config.negative_ttl.is_zero() {
                return groups;
            }
        }
        let mut cache = self.cache.lock();
        if cache.len() >= SWEEP_AT {
            let config = self.config;
            cache.retain(|_, c| now.duration_since(c.at) < config.ttl.max(config.negative_ttl));
        }
        cache.insert(
            user.to_string(),
            Cached {
                groups: Arc::clone(&groups),
                at: now,
            },
        );
        groups
    }

    /// Forgets every cached answer (`dfsadmin -refreshUserToGroupsMappings`).
    pub fn refresh(&self) {
        self.cache.lock().clear();
        tracing::info!("clearing userToGroupsMap cache");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Table(HashMap<&'static str, Vec<&'static str>>, Arc<AtomicUsize>);

    impl GroupSource for Table {
        fn groups(&self, user: &str) -> std::io::Result<Vec<String>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Ok(self
                .0
                .get(user)
                .map(|g| g.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default())
        }
    }

    #[test]
    fn overrides_win_and_answers_are_cached_good_or_bad() {
        let lookups = Arc::new(AtomicUsize::new(0));
        let table = Table(
            HashMap::from([("alice", vec!["alice", "staff"])]),
            Arc::clone(&lookups),
        );
        let groups = Groups::new(
            parse_overrides("dr.who=;bob=eng,ops").expect("overrides"),
            Box::new(table),
            GroupCacheConfig::default(),
        );
        assert_eq!(&*groups.of("bob"), ["eng", "ops"]);
        assert!(groups.of("dr.who").is_empty());
        assert_eq!(
            lookups.load(Ordering::Relaxed),
            0,
            "overrides need no lookup"
        );
        assert_eq!(&*groups.of("alice"), ["alice", "staff"]);
        assert_eq!(&*groups.of("alice"), ["alice", "staff"]);
        assert!(groups.of("nobody-here").is_empty());
        assert!(groups.of("nobody-here").is_empty());
        assert_eq!(
            lookups.load(Ordering::Relaxed),
            2,
            "both answers were cached"
        );
        groups.refresh();
        groups.of("alice");
        assert_eq!(lookups.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn malformed_overrides_are_refused() {
        assert!(parse_overrides("a=b=c").is_err());
        assert_eq!(
            &*parse_overrides("a").expect("bare user")["a"],
            [] as [String; 0]
        );
    }

    #[test]
    fn the_system_database_knows_root() {
        let groups = SystemGroups.groups("root").expect("lookup");
        assert_eq!(
            groups.first().map(String::as_str),
            Some("root"),
            "{groups:?}"
        );
        assert!(
            SystemGroups
                .groups("no-such-user-rdfs-test")
                .expect("lookup")
                .is_empty()
        );
    }
}
