//! Block access tokens, as HDFS has them (`dfs.block.access.token.enable`).
//!
//! The active namenode hands a token out with every block location: an
//! identifier (who, which block, which accesses, until when, signed with
//! which key) and its HMAC-SHA1 under that block key. Datanodes hold the
//! same keys — the namenode sends them at registration and with heartbeats
//! whenever they roll — and refuse any block operation whose token they
//! cannot verify. A datanode copying a replica to another signs a token of
//! its own with the current key, as HDFS's datanodes do.
//!
//! Keys roll every `dfs.block.access.key.update.interval`. A new key is
//! handed to datanodes one interval before it signs anything, and each key
//! is kept until every token it signed has expired, so a token is accepted
//! everywhere for its whole lifetime. In an HA nameservice each namenode
//! rolls its own keys in its own range of key ids, and datanodes keep the
//! keys of every namenode, so a token from either is accepted.
//!
//! The identifier is Hadoop's legacy `Writable` form of
//! `BlockTokenIdentifier`, so the Hadoop front doors can pass tokens to
//! Hadoop clients unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use rand::RngCore;
use sha1::Sha1;
use thiserror::Error;

use crate::writable::{self, Reader, WritableError};

/// `Token.kind` of a block token.
pub const BLOCK_TOKEN_KIND: &str = "HDFS_BLOCK_TOKEN";

/// Bytes of a block key's secret.
const KEY_BYTES: usize = 32;

/// What a token lets its holder do with one block (HDFS's `AccessMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessMode {
    Read,
    Write,
    /// Copy the replica to another datanode (pipeline recovery's transfer).
    Copy,
    /// Replace a replica (the balancer).
    Replace,
}

impl AccessMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Copy => "COPY",
            Self::Replace => "REPLACE",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::Copy, Self::Replace]
            .into_iter()
            .find(|mode| mode.name() == name)
    }
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Hadoop's `Token`: an identifier, its password, and what kind of token it
/// is. An empty token (all fields empty) stands for none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Token {
    pub identifier: Vec<u8>,
    pub password: Vec<u8>,
    pub kind: String,
    pub service: String,
}

impl Token {
    pub fn is_empty(&self) -> bool {
        self.identifier.is_empty() && self.password.is_empty()
    }
}

/// What a block token says (HDFS's `BlockTokenIdentifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTokenIdentifier {
    /// Milliseconds since the epoch.
    pub expiry_ms: i64,
    pub key_id: i32,
    pub user: String,
    pub block_pool_id: String,
    pub block_id: i64,
    pub modes: Vec<AccessMode>,
}

impl BlockTokenIdentifier {
    /// The legacy Writable encoding, with no storage types, storage ids or
    /// handshake secret.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        writable::write_vlong(&mut out, self.expiry_ms);
        writable::write_vint(&mut out, self.key_id);
        writable::write_string(&mut out, &self.user);
        writable::write_string(&mut out, &self.block_pool_id);
        writable::write_vlong(&mut out, self.block_id);
        writable::write_vint(&mut out, self.modes.len() as i32);
        for mode in &self.modes {
            writable::write_string(&mut out, mode.name());
        }
        writable::write_vint(&mut out, 0); // storage types
        writable::write_vint(&mut out, 0); // storage ids
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, TokenError> {
        let malformed = |error: WritableError| TokenError::Malformed(error.to_string());
        let mut reader = Reader::new(bytes);
        let expiry_ms = reader.read_vlong().map_err(malformed)?;
        let key_id = reader.read_vint().map_err(malformed)?;
        let user = reader.read_string().map_err(malformed)?;
        let block_pool_id = reader.read_string().map_err(malformed)?;
        let block_id = reader.read_vlong().map_err(malformed)?;
        let count = reader.read_vint().map_err(malformed)?;
        if !(0..=4).contains(&count) {
            return Err(TokenError::Malformed(format!("{count} access modes")));
        }
        let mut modes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = reader.read_string().map_err(malformed)?;
            modes.push(
                AccessMode::from_name(&name)
                    .ok_or_else(|| TokenError::Malformed(format!("access mode {name:?}")))?,
            );
        }
        // Storage types and ids (Hadoop 3) follow; rdfs does not restrict
        // tokens to storages, and an identifier without them is as valid.
        Ok(Self {
            expiry_ms,
            key_id,
            user,
            block_pool_id,
            block_id,
            modes,
        })
    }
}

/// One signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct BlockKey {
    pub key_id: i32,
    /// Milliseconds since the epoch after which no token it signed is valid.
    pub expiry_ms: i64,
    pub secret: Vec<u8>,
}

impl fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never log a secret.
        f.debug_struct("BlockKey")
            .field("key_id", &self.key_id)
            .field("expiry_ms", &self.expiry_ms)
            .finish_non_exhaustive()
    }
}

/// The keys a namenode sends its datanodes (HDFS's `ExportedBlockKeys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedBlockKeys {
    /// The key that signs new tokens now.
    pub current_key: BlockKey,
    /// Every key whose tokens may still be valid, the next key among them.
    pub all_keys: Vec<BlockKey>,
    pub key_update_interval_ms: i64,
    pub token_lifetime_ms: i64,
}

/// Why a datanode refused a block token. Each names the key id, so the
/// refusal can be traced to the namenode and roll that made it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no block token was sent, and this datanode requires one")]
    Missing,
    #[error("the block token is malformed: {0}")]
    Malformed(String),
    #[error("the block token is of kind {0:?}, not {BLOCK_TOKEN_KIND}")]
    WrongKind(String),
    #[error("the block token's key {key_id} is unknown here (expired, or never received)")]
    UnknownKey { key_id: i32 },
    #[error("the block token signed with key {key_id} has a bad password")]
    BadPassword { key_id: i32 },
    #[error("the block token signed with key {key_id} for {user} expired at {expiry_ms} ms")]
    Expired {
        key_id: i32,
        user: String,
        expiry_ms: i64,
    },
    #[error(
        "the block token signed with key {key_id} is for block {token_block} of pool \
         {token_pool}, not block {block} of pool {pool}"
    )]
    WrongBlock {
        key_id: i32,
        token_pool: String,
        token_block: i64,
        pool: String,
        block: i64,
    },
    #[error("the block token signed with key {key_id} allows {allowed:?}, not {wanted}")]
    WrongMode {
        key_id: i32,
        allowed: Vec<AccessMode>,
        wanted: AccessMode,
    },
    #[error("no block keys have been received from a namenode yet")]
    NoKeys,
}

impl TokenError {
    /// The key the refused token named, for the log.
    pub fn key_id(&self) -> Option<i32> {
        match self {
            Self::UnknownKey { key_id }
            | Self::BadPassword { key_id }
            | Self::Expired { key_id, .. }
            | Self::WrongBlock { key_id, .. }
            | Self::WrongMode { key_id, .. } => Some(*key_id),
            _ => None,
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn password(secret: &[u8], identifier: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(identifier);
    mac.finalize().into_bytes().to_vec()
}

fn password_matches(secret: &[u8], identifier: &[u8], password: &[u8]) -> bool {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(identifier);
    mac.verify_slice(password).is_ok()
}

/// The keys one process holds: all it may verify with, and the one it signs
/// with.
#[derive(Debug, Default)]
struct KeySet {
    current: Option<i32>,
    all: BTreeMap<i32, BlockKey>,
}

impl KeySet {
    fn sign(
        &self,
        user: &str,
        block_pool_id: &str,
        block_id: i64,
        modes: &[AccessMode],
        lifetime_ms: i64,
        now_ms: i64,
    ) -> Option<Token> {
        let key = self.all.get(&self.current?)?;
        let identifier = BlockTokenIdentifier {
            expiry_ms: now_ms + lifetime_ms,
            key_id: key.key_id,
            user: user.to_string(),
            block_pool_id: block_pool_id.to_string(),
            block_id,
            modes: modes.to_vec(),
        }
        .encode();
        Some(Token {
            password: password(&key.secret, &identifier),
            identifier,
            kind: BLOCK_TOKEN_KIND.to_string(),
            service: String::new(),
        })
    }

    fn verify(
        &self,
        token: &Token,
        block_pool_id: &str,
        block_id: i64,
        mode: AccessMode,
        now_ms: i64,
    ) -> Result<BlockTokenIdentifier, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.kind != BLOCK_TOKEN_KIND {
            return Err(TokenError::WrongKind(token.kind.clone()));
        }
        if self.all.is_empty() {
            return Err(TokenError::NoKeys);
        }
        let id = BlockTokenIdentifier::decode(&token.identifier)?;
        let key_id = id.key_id;
        let key = self
            .all
            .get(&key_id)
            .ok_or(TokenError::UnknownKey { key_id })?;
        if !password_matches(&key.secret, &token.identifier, &token.password) {
            return Err(TokenError::BadPassword { key_id });
        }
        if id.expiry_ms < now_ms {
            return Err(TokenError::Expired {
                key_id,
                user: id.user,
                expiry_ms: id.expiry_ms,
            });
        }
        if id.block_pool_id != block_pool_id || id.block_id != block_id {
            return Err(TokenError::WrongBlock {
                key_id,
                token_pool: id.block_pool_id,
                token_block: id.block_id,
                pool: block_pool_id.to_string(),
                block: block_id,
            });
        }
        if !id.modes.contains(&mode) {
            return Err(TokenError::WrongMode {
                key_id,
                allowed: id.modes,
                wanted: mode,
            });
        }
        Ok(id)
    }
}

/// Timing of keys and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTiming {
    pub key_update_interval_ms: i64,
    pub token_lifetime_ms: i64,
}

impl TokenTiming {
    /// How long a key lives: from being handed out as the next key, through
    /// signing for one interval, to the expiry of the last token it signed.
    fn key_life_ms(self) -> i64 {
        2 * self.key_update_interval_ms + self.token_lifetime_ms
    }
}

/// The namenode's keys: it makes and rolls them and signs tokens.
pub struct NamenodeBlockKeys {
    timing: TokenTiming,
    state: RwLock<MasterState>,
    /// Key ids of this namenode are `range_start..range_start + range_len`.
    range_start: i32,
    range_len: i32,
}

struct MasterState {
    keys: KeySet,
    next_key: i32,
    next_roll_ms: i64,
    serial: i32,
    /// Changes whenever the key set does; datanodes echo the version they
    /// hold so that keys are sent only when they changed.
    version: u64,
}

impl MasterState {
    fn new_key(&mut self, range_start: i32, range_len: i32, expiry_ms: i64) -> i32 {
        self.serial = (self.serial + 1) % range_len;
        let key_id = range_start + self.serial;
        let mut secret = vec![0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut secret);
        self.keys.all.insert(
            key_id,
            BlockKey {
                key_id,
                expiry_ms,
                secret,
            },
        );
        self.version += 1;
        key_id
    }
}

impl NamenodeBlockKeys {
    /// Keys for namenode `nn_index` of `nn_count` (0 of 1 without HA), each
    /// in its own range of key ids so that datanodes can hold both sets.
    pub fn new(timing: TokenTiming, nn_index: u32, nn_count: u32, now_ms: i64) -> Self {
        let nn_count = nn_count.max(1) as i32;
        let range_len = i32::MAX / nn_count;
        let range_start = range_len * (nn_index as i32).min(nn_count - 1);
        let mut rng = rand::rng();
        let serial = (rng.next_u32() % range_len as u32) as i32;
        // The version's high half is random so that one from before a
        // restart never matches one from after it.
        let version = u64::from(rng.next_u32()) << 32;
        let mut state = MasterState {
            keys: KeySet::default(),
            next_key: 0,
            next_roll_ms: now_ms + timing.key_update_interval_ms,
            serial,
            version,
        };
        // The current key signs from now; the next one is already sent to
        // datanodes and signs from the next roll.
        let current = state.new_key(
            range_start,
            range_len,
            now_ms + timing.key_life_ms() - timing.key_update_interval_ms,
        );
        state.next_key = state.new_key(range_start, range_len, now_ms + timing.key_life_ms());
        state.keys.current = Some(current);
        Self {
            timing,
            state: RwLock::new(state),
            range_start,
            range_len,
        }
    }

    pub fn timing(&self) -> TokenTiming {
        self.timing
    }

    /// Rolls the keys if an interval has passed: the next key starts
    /// signing, a new next key is made, and expired keys are dropped.
    pub fn roll_if_due(&self, now_ms: i64) {
        if self.state.read().next_roll_ms > now_ms {
            return;
        }
        let mut state = self.state.write();
        while state.next_roll_ms <= now_ms {
            let next = state.next_key;
            state.keys.current = Some(next);
            state.next_key = state.new_key(
                self.range_start,
                self.range_len,
                now_ms + self.timing.key_life_ms(),
            );
            state.keys.all.retain(|_, key| key.expiry_ms >= now_ms);
            state.next_roll_ms += self.timing.key_update_interval_ms;
            if state.next_roll_ms <= now_ms {
                // Asleep for more than an interval: start afresh from now.
                state.next_roll_ms = now_ms + self.timing.key_update_interval_ms;
            }
        }
        tracing::info!(
            current_key = state.keys.current.unwrap_or_default(),
            next_key = state.next_key,
            keys = state.keys.all.len(),
            "rolled block keys"
        );
    }

    /// A token for `user` to do `modes` to one block.
    pub fn generate(
        &self,
        user: &str,
        block_pool_id: &str,
        block_id: i64,
        modes: &[AccessMode],
        now_ms: i64,
    ) -> Token {
        self.roll_if_due(now_ms);
        self.state
            .read()
            .keys
            .sign(
                user,
                block_pool_id,
                block_id,
                modes,
                self.timing.token_lifetime_ms,
                now_ms,
            )
            .expect("the namenode always has a current key")
    }

    /// The version of the key set; it changes whenever the keys do.
    pub fn version(&self, now_ms: i64) -> u64 {
        self.roll_if_due(now_ms);
        self.state.read().version
    }

    /// The keys for datanodes, with their version.
    pub fn export(&self, now_ms: i64) -> (u64, ExportedBlockKeys) {
        self.roll_if_due(now_ms);
        let state = self.state.read();
        let current = state
            .keys
            .current
            .expect("the namenode always has a current key");
        (
            state.version,
            ExportedBlockKeys {
                current_key: state.keys.all[&current].clone(),
                all_keys: state.keys.all.values().cloned().collect(),
                key_update_interval_ms: self.timing.key_update_interval_ms,
                token_lifetime_ms: self.timing.token_lifetime_ms,
            },
        )
    }

    /// Checks a token as a datanode would; for tests and for the namenode's
    /// own use.
    pub fn verify(
        &self,
        token: &Token,
        block_pool_id: &str,
        block_id: i64,
        mode: AccessMode,
        now_ms: i64,
    ) -> Result<BlockTokenIdentifier, TokenError> {
        self.state
            .read()
            .keys
            .verify(token, block_pool_id, block_id, mode, now_ms)
    }
}

/// A datanode's keys: every namenode's, as received, to verify tokens with,
/// and the newest current key to sign its own transfers.
#[derive(Debug, Default)]
pub struct DatanodeBlockKeys {
    state: RwLock<SlaveState>,
}

#[derive(Debug, Default)]
struct SlaveState {
    keys: KeySet,
    token_lifetime_ms: i64,
}

impl DatanodeBlockKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a namenode's keys; keys of other namenodes stay.
    pub fn add_keys(&self, exported: &ExportedBlockKeys, now_ms: i64) {
        let mut state = self.state.write();
        for key in &exported.all_keys {
            state.keys.all.insert(key.key_id, key.clone());
        }
        state
            .keys
            .all
            .insert(exported.current_key.key_id, exported.current_key.clone());
        state.keys.current = Some(exported.current_key.key_id);
        state.token_lifetime_ms = exported.token_lifetime_ms;
        state.keys.all.retain(|_, key| key.expiry_ms >= now_ms);
    }

    pub fn has_keys(&self) -> bool {
        !self.state.read().keys.all.is_empty()
    }

    pub fn verify(
        &self,
        token: &Token,
        block_pool_id: &str,
        block_id: i64,
        mode: AccessMode,
        now_ms: i64,
    ) -> Result<BlockTokenIdentifier, TokenError> {
        self.state
            .read()
            .keys
            .verify(token, block_pool_id, block_id, mode, now_ms)
    }

    /// A token of this datanode's own, for a copy it makes to another.
    pub fn generate(
        &self,
        user: &str,
        block_pool_id: &str,
        block_id: i64,
        modes: &[AccessMode],
        now_ms: i64,
    ) -> Result<Token, TokenError> {
        let state = self.state.read();
        state
            .keys
            .sign(
                user,
                block_pool_id,
                block_id,
                modes,
                state.token_lifetime_ms,
                now_ms,
            )
            .ok_or(TokenError::NoKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "BP-1-127.0.0.1-1";
    const MINUTE: i64 = 60_000;

    fn timing() -> TokenTiming {
        TokenTiming {
            key_update_interval_ms: 10 * MINUTE,
            token_lifetime_ms: 10 * MINUTE,
        }
    }

    fn datanode_with(namenodes: &[&NamenodeBlockKeys], now: i64) -> DatanodeBlockKeys {
        let datanode = DatanodeBlockKeys::new();
        for namenode in namenodes {
            datanode.add_keys(&namenode.export(now).1, now);
        }
        datanode
    }

    #[test]
    fn identifiers_round_trip_in_hadoops_legacy_form() {
        let id = BlockTokenIdentifier {
            expiry_ms: 1_765_000_000_000,
            key_id: 1_234_567,
            user: "alice".into(),
            block_pool_id: POOL.into(),
            block_id: 1_073_741_825,
            modes: vec![AccessMode::Read, AccessMode::Write],
        };
        let bytes = id.encode();
        // The first byte of a legacy identifier is a negative vlong length,
        // which is how Hadoop tells it from the protobuf form.
        assert!((bytes[0] as i8) < 0);
        assert_eq!(BlockTokenIdentifier::decode(&bytes).unwrap(), id);
        for cut in 0..bytes.len() - 2 {
            assert!(BlockTokenIdentifier::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn a_token_is_accepted_for_its_block_and_modes_only() {
        let now = 1_000 * MINUTE;
        let namenode = NamenodeBlockKeys::new(timing(), 0, 1, now);
        let datanode = datanode_with(&[&namenode], now);
        let token = namenode.generate("alice", POOL, 7, &[AccessMode::Read], now);
        let id = datanode
            .verify(&token, POOL, 7, AccessMode::Read, now)
            .unwrap();
        assert_eq!(id.user, "alice");

        let key_id = id.key_id;
        assert_eq!(
            datanode.verify(&token, POOL, 8, AccessMode::Read, now),
            Err(TokenError::WrongBlock {
                key_id,
                token_pool: POOL.into(),
                token_block: 7,
                pool: POOL.into(),
                block: 8
            })
        );
        assert!(matches!(
            datanode.verify(&token, "BP-other", 7, AccessMode::Read, now),
            Err(TokenError::WrongBlock { .. })
        ));
        assert!(matches!(
            datanode.verify(&token, POOL, 7, AccessMode::Write, now),
            Err(TokenError::WrongMode { .. })
        ));
        assert_eq!(
            datanode.verify(&Token::default(), POOL, 7, AccessMode::Read, now),
            Err(TokenError::Missing)
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let now = 1_000 * MINUTE;
        let namenode = NamenodeBlockKeys::new(timing(), 0, 1, now);
        let datanode = datanode_with(&[&namenode], now);
        let token = namenode.generate("alice", POOL, 7, &[AccessMode::Read], now);

        // Another block's identifier with the first one's password.
        let other = namenode.generate("alice", POOL, 8, &[AccessMode::Read], now);
        let forged = Token {
            identifier: other.identifier.clone(),
            ..token.clone()
        };
        assert!(matches!(
            datanode.verify(&forged, POOL, 8, AccessMode::Read, now),
            Err(TokenError::BadPassword { .. })
        ));

        // A token signed by a namenode this datanode never heard from.
        let stranger = NamenodeBlockKeys::new(timing(), 0, 1, now);
        let foreign = stranger.generate("alice", POOL, 7, &[AccessMode::Read], now);
        assert!(matches!(
            datanode.verify(&foreign, POOL, 7, AccessMode::Read, now),
            Err(TokenError::UnknownKey { .. } | TokenError::BadPassword { .. })
        ));

        let garbage = Token {
            identifier: vec![0x8f],
            ..token
        };
        assert!(matches!(
            datanode.verify(&garbage, POOL, 7, AccessMode::Read, now),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn tokens_expire_but_outlive_the_roll_of_the_key_that_signed_them() {
        let start = 1_000 * MINUTE;
        let namenode = NamenodeBlockKeys::new(timing(), 0, 1, start);
        let datanode = datanode_with(&[&namenode], start);
        let signed = start + 9 * MINUTE;
        let token = namenode.generate("alice", POOL, 7, &[AccessMode::Read], signed);

        // After the roll the signing key is no longer current, and the
        // datanode has been sent the newer keys, but the token still holds.
        let later = start + 18 * MINUTE;
        let version = namenode.version(signed);
        datanode.add_keys(&namenode.export(later).1, later);
        assert_ne!(namenode.version(later), version);
        assert!(
            datanode
                .verify(&token, POOL, 7, AccessMode::Read, later)
                .is_ok()
        );

        let expired = signed + 10 * MINUTE + 1;
        assert!(matches!(
            datanode.verify(&token, POOL, 7, AccessMode::Read, expired),
            Err(TokenError::Expired { .. })
        ));
        // A token signed after the roll is known to the datanode before it
        // is first used: the next key went out with the first export.
        let fresh = namenode.generate("alice", POOL, 7, &[AccessMode::Read], later);
        let early = datanode_with(&[&namenode], start);
        assert!(
            early
                .verify(&fresh, POOL, 7, AccessMode::Read, later)
                .is_ok()
        );
    }

    #[test]
    fn datanodes_accept_the_tokens_of_both_ha_namenodes() {
        let now = 1_000 * MINUTE;
        let nn1 = NamenodeBlockKeys::new(timing(), 0, 2, now);
        let nn2 = NamenodeBlockKeys::new(timing(), 1, 2, now);
        let datanode = datanode_with(&[&nn1, &nn2], now);
        for namenode in [&nn1, &nn2] {
            let token = namenode.generate("bob", POOL, 9, &[AccessMode::Write], now);
            assert!(
                datanode
                    .verify(&token, POOL, 9, AccessMode::Write, now)
                    .is_ok()
            );
        }
        let ids = |nn: &NamenodeBlockKeys| -> Vec<i32> {
            nn.export(now)
                .1
                .all_keys
                .iter()
                .map(|key| key.key_id)
                .collect()
        };
        assert!(ids(&nn1).iter().all(|id| *id < i32::MAX / 2));
        assert!(ids(&nn2).iter().all(|id| *id >= i32::MAX / 2));
    }

    #[test]
    fn a_datanode_signs_copies_with_the_current_key() {
        let now = 1_000 * MINUTE;
        let namenode = NamenodeBlockKeys::new(timing(), 0, 1, now);
        let datanode = DatanodeBlockKeys::new();
        assert_eq!(
            datanode.generate("dn", POOL, 3, &[AccessMode::Write], now),
            Err(TokenError::NoKeys)
        );
        datanode.add_keys(&namenode.export(now).1, now);
        let token = datanode
            .generate("dn", POOL, 3, &[AccessMode::Write], now)
            .unwrap();
        let other = datanode_with(&[&namenode], now);
        assert!(
            other
                .verify(&token, POOL, 3, AccessMode::Write, now)
                .is_ok()
        );
    }
}
