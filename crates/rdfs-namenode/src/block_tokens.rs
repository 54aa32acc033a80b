//! The block access tokens this namenode hands out with block locations
//! (`dfs.block.access.token.enable`), and the keys it sends datanodes to
//! check them with. See [`rdfs_common::block_token`] for the scheme.

use rdfs_common::block_token::{
    AccessMode, ExportedBlockKeys, NamenodeBlockKeys, TokenTiming, now_ms,
};
use rdfs_common::config::{Config, ConfigError};
use rdfs_common::protocol::{FileStatus, LocatedBlock, LocatedBlocks};

/// Off, or this namenode's keys.
pub struct BlockTokens {
    keys: Option<NamenodeBlockKeys>,
}

impl BlockTokens {
    pub fn disabled() -> Self {
        Self { keys: None }
    }

    /// Keys in this namenode's range of key ids: its place among the HA
    /// namenodes, or the only range without HA.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let security = &config.security;
        if !security.block_access_token_enable {
            return Ok(Self::disabled());
        }
        let timing = TokenTiming {
            key_update_interval_ms: security.block_access_key_update_interval_ms as i64,
            token_lifetime_ms: security.block_access_token_lifetime_ms as i64,
        };
        if timing.key_update_interval_ms <= 0 || timing.token_lifetime_ms <= 0 {
            return Err(ConfigError::Invalid(
                "security.block_access_key_update_interval_ms and \
                 security.block_access_token_lifetime_ms must be positive"
                    .to_string(),
            ));
        }
        let (index, count) = if config.is_ha() {
            let namenodes = config.ha_namenodes()?;
            let index = namenodes
                .iter()
                .position(|nn| nn.id == config.ha.namenode_id)
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "ha.namenode_id '{}' is not among ha.namenodes",
                        config.ha.namenode_id
                    ))
                })?;
            (index as u32, namenodes.len() as u32)
        } else {
            (0, 1)
        };
        Ok(Self {
            keys: Some(NamenodeBlockKeys::new(timing, index, count, now_ms())),
        })
    }

    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    /// Gives `located` a token for `user` to do `modes` to its block.
    pub fn stamp(&self, located: &mut LocatedBlock, user: &str, modes: &[AccessMode]) {
        if let Some(keys) = &self.keys {
            let block = &located.block;
            located.block_token =
                keys.generate(user, &block.pool_id, block.block_id, modes, now_ms());
        }
    }

    /// Read tokens for every block of a file's locations.
    pub fn stamp_for_read(&self, located: &mut LocatedBlocks, user: &str) {
        if self.keys.is_none() {
            return;
        }
        for block in located.blocks.iter_mut().chain(located.last_block.as_mut()) {
            self.stamp(block, user, &[AccessMode::Read]);
        }
    }

    /// Read tokens for the locations a listing or file status carries.
    pub fn stamp_status(&self, status: &mut FileStatus, user: &str) {
        if let Some(located) = status.locations.as_mut() {
            self.stamp_for_read(located, user);
        }
    }

    /// The keys for a datanode that holds `held_version`, if they changed.
    pub fn keys_for(&self, held_version: u64) -> Option<(u64, ExportedBlockKeys)> {
        let keys = self.keys.as_ref()?;
        let now = now_ms();
        if keys.version(now) == held_version {
            return None;
        }
        Some(keys.export(now))
    }
}
