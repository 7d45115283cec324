//! Logical epochs: numbered from a genesis instant recorded in the network config,
//! each of one fixed length.
//!
//! Epoch `e` covers `[genesis + e·length, genesis + (e+1)·length)`. Times before
//! genesis belong to no epoch. All arithmetic is checked: a schedule whose epochs
//! would run past the end of time simply has no epoch there.

use plexus_actors::Time;
use serde::{Deserialize, Serialize};

/// The development default: one-minute epochs.
pub const DEV_EPOCH_MS: u64 = 60_000;

/// Why a schedule was refused (the config is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Epochs must last at least one second.
    #[error("epoch length {0} ms is shorter than 1000 ms")]
    TooShort(u64),
}

/// Genesis and epoch length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    genesis_us: u64,
    length_us: u64,
}

impl Schedule {
    /// A schedule starting at `genesis` with epochs of `length_ms`.
    pub fn new(genesis: Time, length_ms: u64) -> Result<Self, ScheduleError> {
        if length_ms < 1000 {
            return Err(ScheduleError::TooShort(length_ms));
        }
        Ok(Self {
            genesis_us: genesis.as_micros(),
            length_us: length_ms.saturating_mul(1000),
        })
    }

    /// The genesis instant.
    pub fn genesis(&self) -> Time {
        Time::from_micros(self.genesis_us)
    }

    /// Epoch length in milliseconds.
    pub fn length_ms(&self) -> u64 {
        self.length_us / 1000
    }

    /// The epoch `now` falls in; `None` before genesis.
    pub fn epoch_at(&self, now: Time) -> Option<u64> {
        let since = now.as_micros().checked_sub(self.genesis_us)?;
        Some(since / self.length_us)
    }

    /// When `epoch` starts; `None` if that is past the end of time.
    pub fn start(&self, epoch: u64) -> Option<Time> {
        epoch
            .checked_mul(self.length_us)
            .and_then(|d| d.checked_add(self.genesis_us))
            .map(Time::from_micros)
    }

    /// When `epoch` ends (the next one starts).
    pub fn end(&self, epoch: u64) -> Option<Time> {
        self.start(epoch.checked_add(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_tile_time_from_genesis() {
        let s = Schedule::new(Time::from_millis(5_000), 60_000).unwrap();
        assert_eq!(s.epoch_at(Time::from_millis(4_999)), None);
        assert_eq!(s.epoch_at(Time::from_millis(5_000)), Some(0));
        assert_eq!(s.epoch_at(Time::from_millis(64_999)), Some(0));
        assert_eq!(s.epoch_at(Time::from_millis(65_000)), Some(1));
        assert_eq!(s.start(1), Some(Time::from_millis(65_000)));
        assert_eq!(s.end(0), s.start(1));
        assert_eq!(s.start(u64::MAX), None);
        assert_eq!(s.end(u64::MAX), None);
    }

    #[test]
    fn too_short_is_refused() {
        assert_eq!(
            Schedule::new(Time::ZERO, 999),
            Err(ScheduleError::TooShort(999))
        );
    }
}
