//! Reading the namespace: file status, listings, block locations, content
//! summaries. Allowed in safe mode.

use rdfs_common::path;
use rdfs_common::protocol::{ContentSummary, FileStatus, LocatedBlocks, ServerDefaults};

use super::access::PathUse;
use super::{Caller, Namesystem, file_status};
use crate::apply::FsState;
use crate::block_manager::BlockState;
use crate::error::{NamenodeError, Result};
use crate::namespace::{Inode, compare_names};
use crate::permission::{FsAction, Required};

/// One page of a directory listing.
#[derive(Debug, Clone)]
pub struct DirectoryListing {
    pub entries: Vec<FileStatus>,
    pub remaining: u32,
}

/// A file's blocks overlapping `[offset, offset + length)`, with locations.
pub(crate) fn located_blocks(
    fs: &FsState,
    inode: Inode<'_>,
    offset: u64,
    length: u64,
) -> LocatedBlocks {
    let end = offset.saturating_add(length);
    let mut located = LocatedBlocks {
        under_construction: inode.writer().is_some(),
        ..Default::default()
    };
    let slots = inode.block_slots();
    let mut position = 0u64;
    let mut complete_length = 0u64;
    for (index, &slot) in slots.iter().enumerate() {
        let info = fs.blocks.info(slot);
        let block_len = info.num_bytes;
        let is_last = index + 1 == slots.len();
        // The last block of a file being written (or recovered) has a length
        // only its datanodes know; a reader asks them. A truncate's target
        // length is final.
        let being_written =
            info.state.is_open() && !fs.blocks.recovery(slot).is_some_and(|r| r.truncate);
        if !being_written {
            complete_length += block_len;
        }
        let overlaps = position < end
            && (position + block_len > offset
                || (block_len == 0 && position >= offset)
                || (is_last && being_written));
        if overlaps {
            located
                .blocks
                .push(fs.blocks.located(slot, position, &fs.datanodes));
        }
        if index + 1 == slots.len() {
            located.is_last_block_complete = info.state == BlockState::Complete;
            located.under_construction |= being_written;
            located.last_block = Some(fs.blocks.located(slot, position, &fs.datanodes));
        }
        position += block_len;
    }
    located.file_length = complete_length;
    located
}

impl Namesystem {
    pub fn get_file_info(&self, caller: &Caller, src: &str) -> Result<Option<FileStatus>> {
        let components = path::components(src)?;
        let state = self.state.read();
        let fs = &state.fs;
        let resolved = match self.resolve_checked(
            &fs.namespace,
            caller,
            &components,
            Required::TRAVERSE,
            PathUse::Lookup,
        ) {
            Ok(resolved) => resolved,
            Err(NamenodeError::FileNotFound(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        Ok(resolved
            .last()
            .and_then(|id| fs.namespace.get(id))
            .map(|inode| file_status(fs, inode, Vec::new())))
    }

    /// A page of the listing of `src` after `start_after`; `None` when `src`
    /// does not exist. A file lists as itself, with an empty name.
    pub fn get_listing(
        &self,
        caller: &Caller,
        src: &str,
        start_after: &[u8],
        need_location: bool,
    ) -> Result<Option<DirectoryListing>> {
        let components = path::components(src)?;
        let state = self.state.read();
        let fs = &state.fs;
        let resolved = match self.resolve_checked(
            &fs.namespace,
            caller,
            &components,
            Required::TRAVERSE,
            PathUse::Lookup,
        ) {
            Ok(resolved) => resolved,
            Err(NamenodeError::FileNotFound(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        let Some(inode) = resolved.last().and_then(|id| fs.namespace.get(id)) else {
            return Ok(None);
        };
        if inode.is_dir() {
            self.check_resolved(
                &fs.namespace,
                caller,
                &components,
                &resolved,
                Required::access(FsAction::READ_EXECUTE),
            )?;
        }
        let status_of = |inode: Inode<'_>, name: Vec<u8>| {
            let mut status = file_status(fs, inode, name);
            if need_location && !inode.is_dir() {
                status.locations = Some(located_blocks(fs, inode, 0, u64::MAX));
            }
            status
        };
        if !inode.is_dir() {
            return Ok(Some(DirectoryListing {
                entries: vec![status_of(inode, Vec::new())],
                remaining: 0,
            }));
        }
        let children = inode.children();
        let start = if start_after.is_empty() {
            0
        } else {
            children.partition_point(|child| {
                compare_names(fs.namespace.at(*child).name(), start_after)
                    != std::cmp::Ordering::Greater
            })
        };
        let end = (start + self.config.listing_limit).min(children.len());
        let entries = children[start..end]
            .iter()
            .map(|child| {
                let child = fs.namespace.at(*child);
                status_of(child, child.name().to_vec())
            })
            .collect();
        Ok(Some(DirectoryListing {
            entries,
            remaining: (children.len() - end) as u32,
        }))
    }

    pub fn get_block_locations(
        &self,
        caller: &Caller,
        src: &str,
        offset: u64,
        length: u64,
    ) -> Result<LocatedBlocks> {
        let components = path::components(src)?;
        let state = self.state.read();
        let fs = &state.fs;
        let resolved = self.resolve_checked(
            &fs.namespace,
            caller,
            &components,
            Required::TRAVERSE,
            PathUse::Access,
        )?;
        let inode = resolved
            .last()
            .and_then(|id| fs.namespace.get(id))
            .ok_or_else(|| NamenodeError::FileNotFound(format!("File does not exist: {src}")))?;
        if inode.is_dir() {
            return Err(NamenodeError::FileNotFound(format!(
                "Path is not a file: {src}"
            )));
        }
        self.check_resolved(
            &fs.namespace,
            caller,
            &components,
            &resolved,
            Required::access(FsAction::READ),
        )?;
        Ok(located_blocks(fs, inode, offset, length))
    }

    pub fn get_content_summary(&self, caller: &Caller, src: &str) -> Result<ContentSummary> {
        let components = path::components(src)?;
        let state = self.state.read();
        let fs = &state.fs;
        let resolved = self.resolve_checked(
            &fs.namespace,
            caller,
            &components,
            Required::TRAVERSE,
            PathUse::Access,
        )?;
        let id = resolved
            .last()
            .ok_or_else(|| NamenodeError::FileNotFound(format!("File does not exist: {src}")))?;
        self.check_subtree(&fs.namespace, caller, id, FsAction::READ_EXECUTE)?;
        let mut summary = ContentSummary {
            quota: -1,
            space_quota: -1,
            ..Default::default()
        };
        fs.namespace.walk(id, &mut |inode| {
            if inode.is_dir() {
                summary.directory_count += 1;
            } else {
                summary.file_count += 1;
                let length: u64 = inode
                    .block_slots()
                    .iter()
                    .map(|slot| fs.blocks.info(*slot).num_bytes)
                    .sum();
                summary.length += length;
                summary.space_consumed += length * u64::from(inode.replication());
            }
        });
        Ok(summary)
    }

    pub fn server_defaults(&self) -> ServerDefaults {
        ServerDefaults {
            block_size: self.config.default_block_size,
            bytes_per_checksum: self.config.bytes_per_checksum,
            write_packet_size: self.config.write_packet_size,
            replication: self.config.default_replication,
            // Whole minutes on the wire, as HDFS's; a fraction of one (a
            // test's) still says the trash is on.
            trash_interval_minutes: self.config.trash_interval.as_secs().div_ceil(60),
        }
    }
}
