//! Safe mode: the namenode is read-only after start-up until enough blocks
//! have a reported replica and enough datanodes have registered (then it
//! waits a configurable extension), or for as long as an operator keeps it
//! on.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct SafeModeConfig {
    /// Share of complete blocks that need a reported replica
    /// (`dfs.namenode.safemode.threshold-pct`).
    pub threshold: f64,
    /// Live datanodes needed (`dfs.namenode.safemode.min.datanodes`).
    pub min_datanodes: usize,
    /// How long to stay after the thresholds are met
    /// (`dfs.namenode.safemode.extension`).
    pub extension: Duration,
}

/// Progress towards leaving safe mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockSafety {
    /// Complete blocks with at least the minimum live replicas.
    pub safe: u64,
    /// Complete blocks.
    pub total: u64,
    pub live_datanodes: usize,
}

#[derive(Debug, Clone)]
enum State {
    Off,
    /// Entered at start-up; left automatically.
    Startup {
        thresholds_met_at: Option<Instant>,
    },
    /// Entered by an operator; left only by an operator.
    Manual,
}

#[derive(Debug, Clone)]
pub struct SafeMode {
    config: SafeModeConfig,
    state: State,
    last: BlockSafety,
    /// Some of the blocks start-up safe mode still waits for (block, file),
    /// as last looked up, so the tip names them.
    waiting_for: Vec<String>,
}

/// Blocks named in the tip at most.
pub const TIP_BLOCKS: usize = 5;

impl SafeMode {
    /// Safe mode as a namenode starts: on.
    pub fn startup(config: SafeModeConfig) -> Self {
        Self {
            config,
            state: State::Startup {
                thresholds_met_at: None,
            },
            last: BlockSafety::default(),
            waiting_for: Vec::new(),
        }
    }

    pub fn off(config: SafeModeConfig) -> Self {
        Self {
            config,
            state: State::Off,
            last: BlockSafety::default(),
            waiting_for: Vec::new(),
        }
    }

    /// Whether start-up safe mode is short of its block threshold (so the
    /// blocks it waits for are worth naming).
    pub fn is_short_of_blocks(&self) -> bool {
        matches!(self.state, State::Startup { .. }) && !self.thresholds_met(self.last)
    }

    /// Names some of the blocks safe mode waits for in the tip.
    pub fn set_waiting_for(&mut self, blocks: Vec<String>) {
        self.waiting_for = blocks;
    }

    pub fn is_on(&self) -> bool {
        !matches!(self.state, State::Off)
    }

    /// True while the namenode waits on block reports by itself.
    pub fn is_automatic(&self) -> bool {
        matches!(self.state, State::Startup { .. })
    }

    pub fn enter(&mut self) {
        self.state = State::Manual;
    }

    pub fn leave(&mut self) {
        if self.is_on() {
            tracing::info!("leaving safe mode");
        }
        self.state = State::Off;
    }

    fn thresholds_met(&self, safety: BlockSafety) -> bool {
        let needed = (self.config.threshold * safety.total as f64).ceil() as u64;
        safety.safe >= needed.min(safety.total)
            && safety.live_datanodes >= self.config.min_datanodes
    }

    /// Re-evaluates automatic safe mode; true when it has just been left.
    pub fn update(&mut self, safety: BlockSafety, now: Instant) -> bool {
        self.last = safety;
        let met = self.thresholds_met(safety);
        let State::Startup { thresholds_met_at } = &mut self.state else {
            return false;
        };
        match (met, *thresholds_met_at) {
            (false, _) => *thresholds_met_at = None,
            (true, None) => {
                tracing::info!(
                    safe = safety.safe,
                    total = safety.total,
                    live_datanodes = safety.live_datanodes,
                    extension_ms = self.config.extension.as_millis() as u64,
                    "safe mode thresholds reached"
                );
                *thresholds_met_at = Some(now);
            }
            (true, Some(_)) => {}
        }
        // With no blocks there is nothing to wait for (a fresh namespace).
        let extension = if safety.total == 0 {
            std::time::Duration::ZERO
        } else {
            self.config.extension
        };
        if let State::Startup {
            thresholds_met_at: Some(at),
        } = self.state
            && now.duration_since(at) >= extension
        {
            tracing::info!(
                safe = safety.safe,
                total = safety.total,
                "leaving safe mode: enough blocks are reported"
            );
            self.state = State::Off;
            return true;
        }
        false
    }

    /// Why writes are refused, after "Name node is in safe mode." (HDFS's tip).
    pub fn tip(&self) -> String {
        match self.state {
            State::Off => "Safe mode is OFF.".to_string(),
            State::Manual => {
                "It was turned on manually. Use \"rdfs dfsadmin -safemode leave\" to turn safe mode off.".to_string()
            }
            State::Startup { thresholds_met_at } => {
                let s = self.last;
                let needed = ((self.config.threshold * s.total as f64).ceil() as u64).min(s.total);
                let mut tip = if s.safe < needed {
                    format!(
                        "The reported blocks {} needs additional {} blocks to reach the threshold {:.4} of total blocks {}.",
                        s.safe,
                        needed - s.safe,
                        self.config.threshold,
                        s.total
                    )
                } else {
                    format!(
                        "The reported blocks {} has reached the threshold {:.4} of total blocks {}.",
                        s.safe, self.config.threshold, s.total
                    )
                };
                if self.config.min_datanodes == 0 {
                    tip.push_str(" The minimum number of live datanodes is not required.");
                } else if s.live_datanodes < self.config.min_datanodes {
                    tip.push_str(&format!(
                        " The number of live datanodes {} needs an additional {} live datanodes to reach the minimum number {}.",
                        s.live_datanodes,
                        self.config.min_datanodes - s.live_datanodes,
                        self.config.min_datanodes
                    ));
                }
                if thresholds_met_at.is_some() {
                    tip.push_str(" In safe mode extension. Safe mode will be turned off automatically soon.");
                } else {
                    tip.push_str(" Safe mode will be turned off automatically once the thresholds have been reached.");
                }
                if s.safe < needed && !self.waiting_for.is_empty() {
                    let more = (needed - s.safe).saturating_sub(self.waiting_for.len() as u64);
                    tip.push_str(&format!(
                        " Blocks with no live replica reported yet include {}{}; \
                         `rdfs fsck / -files -blocks` lists every one. If the datanodes holding them \
                         are gone for good, `rdfs dfsadmin -safemode leave` and delete or restore those files.",
                        self.waiting_for.join(", "),
                        if more > 0 {
                            format!(" and at least {more} more")
                        } else {
                            String::new()
                        }
                    ));
                }
                tip
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extension_ms: u64) -> SafeModeConfig {
        SafeModeConfig {
            threshold: 0.999,
            min_datanodes: 1,
            extension: Duration::from_millis(extension_ms),
        }
    }

    #[test]
    fn leaves_after_thresholds_and_extension() {
        let mut safe = SafeMode::startup(config(100));
        let now = Instant::now();
        assert!(!safe.update(
            BlockSafety {
                safe: 998,
                total: 1000,
                live_datanodes: 1
            },
            now
        ));
        assert!(
            safe.tip().contains(
                "needs additional 1 blocks to reach the threshold 0.9990 of total blocks 1000"
            ),
            "{}",
            safe.tip()
        );
        assert!(!safe.update(
            BlockSafety {
                safe: 999,
                total: 1000,
                live_datanodes: 0
            },
            now
        ));
        assert!(!safe.update(
            BlockSafety {
                safe: 999,
                total: 1000,
                live_datanodes: 1
            },
            now
        ));
        assert!(safe.is_on());
        assert!(safe.update(
            BlockSafety {
                safe: 999,
                total: 1000,
                live_datanodes: 1
            },
            now + Duration::from_millis(150)
        ));
        assert!(!safe.is_on());
    }

    #[test]
    fn empty_namespace_needs_only_datanodes_and_manual_mode_stays() {
        let mut safe = SafeMode::startup(config(30_000));
        assert!(safe.update(
            BlockSafety {
                safe: 0,
                total: 0,
                live_datanodes: 1
            },
            Instant::now()
        ));
        safe.enter();
        assert!(!safe.update(
            BlockSafety {
                safe: 5,
                total: 5,
                live_datanodes: 3
            },
            Instant::now()
        ));
        assert!(safe.is_on());
        assert!(safe.tip().contains("turned on manually"));
        safe.leave();
        assert!(!safe.is_on());
    }
}
