//! Whether a block operation may go ahead: the block access token it
//! carries, checked against the keys the namenodes sent
//! (`dfs.block.access.token.enable`). See [`rdfs_common::block_token`].
//!
//! Tokens are required once this datanode's configuration asks for them or
//! any namenode sends keys, whichever comes first, and stay required: a
//! namenode that stops sending keys does not turn checking off.

use std::sync::atomic::{AtomicBool, Ordering};

use rdfs_common::block_token::{
    AccessMode, DatanodeBlockKeys, ExportedBlockKeys, Token, TokenError, now_ms,
};
use rdfs_common::protocol::ExtendedBlock;

use crate::error::DatanodeError;

/// The user named in the tokens a datanode signs for its own copies.
const DATANODE_USER: &str = "datanode";

pub struct BlockAccess {
    required: AtomicBool,
    keys: DatanodeBlockKeys,
}

impl BlockAccess {
    pub fn new(required: bool) -> Self {
        Self {
            required: AtomicBool::new(required),
            keys: DatanodeBlockKeys::new(),
        }
    }

    pub fn required(&self) -> bool {
        self.required.load(Ordering::Acquire)
    }

    /// Takes a namenode's keys (at registration and whenever they roll).
    pub fn add_keys(&self, keys: &ExportedBlockKeys) {
        self.keys.add_keys(keys, now_ms());
        if !self.required.swap(true, Ordering::AcqRel) {
            tracing::info!("block access tokens required from now on");
        }
        tracing::debug!(
            current_key = keys.current_key.key_id,
            keys = keys.all_keys.len(),
            "block keys received"
        );
    }

    /// Refuses `op` on `block` unless `token` grants `mode`; the refusal is
    /// logged with the token's key id.
    pub fn check(
        &self,
        token: &Token,
        block: &ExtendedBlock,
        mode: AccessMode,
        op: &str,
    ) -> Result<(), DatanodeError> {
        if !self.required() {
            return Ok(());
        }
        self.keys
            .verify(token, &block.pool_id, block.block_id, mode, now_ms())
            .map(drop)
            .map_err(|error| {
                let key_id = error
                    .key_id()
                    .map_or_else(|| "none".to_string(), |id| id.to_string());
                tracing::warn!(op, block = %block, %key_id, %error, "block token refused");
                DatanodeError::InvalidBlockToken {
                    op: op.to_string(),
                    block: block.to_string(),
                    error,
                }
            })
    }

    /// A token of this datanode's own for a copy it makes to another
    /// (re-replication, recovery, pipeline recovery's transfer); none when
    /// tokens are off.
    pub fn token_for(
        &self,
        block: &ExtendedBlock,
        modes: &[AccessMode],
    ) -> Result<Token, DatanodeError> {
        if !self.required() {
            return Ok(Token::default());
        }
        let token: Token = self
            .keys
            .generate(
                DATANODE_USER,
                &block.pool_id,
                block.block_id,
                modes,
                now_ms(),
            )
            .map_err(|error: TokenError| DatanodeError::InvalidBlockToken {
                op: "sign a copy".to_string(),
                block: block.to_string(),
                error,
            })?;
        Ok(token)
    }
}
