//! Forwarding database: (VLAN, MAC) -> port, bounded, with ageing.

use std::collections::HashMap;

use crate::config::PortId;
use crate::counters::FdbCounters;
use crate::time::Instant;
use core::time::Duration;
use weft_wire::MacAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub port: PortId,
    /// Configured, never aged, moved or flushed.
    pub is_static: bool,
    pub last_seen: Instant,
}

/// What learning a source did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    New,
    Refreshed,
    Moved {
        from: PortId,
    },
    /// A static entry says this MAC lives elsewhere; nothing changed.
    Static,
    TableFull,
}

#[derive(Debug, Clone)]
pub struct Fdb {
    // SipHash (std's default) rather than a fast hash: sources are chosen by
    // whoever sends frames, and a MAC flood must not degrade the table.
    map: HashMap<(u16, MacAddr), FdbEntry>,
    max: usize,
    pub(crate) counters: FdbCounters,
}

impl Fdb {
    pub fn new(max: usize) -> Self {
        Fdb {
            // Reserve up front (up to a point) so learning rarely allocates;
            // the map never holds more than `max`, so memory stays bounded.
            map: HashMap::with_capacity(max.min(1024)),
            max,
            counters: FdbCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn max_entries(&self) -> usize {
        self.max
    }

    pub fn lookup(&self, vid: u16, mac: MacAddr) -> Option<PortId> {
        self.map.get(&(vid, mac)).map(|e| e.port)
    }

    pub fn get(&self, vid: u16, mac: MacAddr) -> Option<&FdbEntry> {
        self.map.get(&(vid, mac))
    }

    pub fn learn(&mut self, vid: u16, mac: MacAddr, port: PortId, now: Instant) -> Learn {
        if let Some(e) = self.map.get_mut(&(vid, mac)) {
            if e.is_static {
                return Learn::Static;
            }
            e.last_seen = now;
            if e.port == port {
                return Learn::Refreshed;
            }
            let from = e.port;
            e.port = port;
            self.counters.moves += 1;
            return Learn::Moved { from };
        }
        if self.map.len() >= self.max {
            self.counters.table_full += 1;
            return Learn::TableFull;
        }
        self.map.insert(
            (vid, mac),
            FdbEntry {
                port,
                is_static: false,
                last_seen: now,
            },
        );
        self.counters.learned += 1;
        Learn::New
    }

    /// Adds or replaces a static entry; `false` if the table is full.
    pub fn add_static(&mut self, vid: u16, mac: MacAddr, port: PortId) -> bool {
        if !self.map.contains_key(&(vid, mac)) && self.map.len() >= self.max {
            return false;
        }
        self.map.insert(
            (vid, mac),
            FdbEntry {
                port,
                is_static: true,
                last_seen: Instant::ZERO,
            },
        );
        true
    }

    /// Marks a learned entry for `mac` on `port` as seen at `at` (if that
    /// is later than it was); creates nothing, moves nothing, and leaves
    /// static entries and entries on other ports alone. True if touched.
    pub fn touch(&mut self, vid: u16, mac: MacAddr, port: PortId, at: Instant) -> bool {
        match self.map.get_mut(&(vid, mac)) {
            Some(e) if !e.is_static && e.port == port => {
                e.last_seen = e.last_seen.max(at);
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, vid: u16, mac: MacAddr) -> Option<FdbEntry> {
        self.map.remove(&(vid, mac))
    }

    /// Drops dynamic entries on every port except `keep` (all if `None`).
    pub fn flush_except(&mut self, keep: Option<PortId>) {
        let before = self.map.len();
        self.map.retain(|_, e| e.is_static || Some(e.port) == keep);
        self.counters.flushed += (before - self.map.len()) as u64;
    }

    /// Drops dynamic entries on `port`.
    pub fn flush_port(&mut self, port: PortId) {
        let before = self.map.len();
        self.map.retain(|_, e| e.is_static || e.port != port);
        self.counters.flushed += (before - self.map.len()) as u64;
    }

    pub fn age(&mut self, now: Instant, ageing: Duration) {
        let before = self.map.len();
        self.map
            .retain(|_, e| e.is_static || now.saturating_duration_since(e.last_seen) < ageing);
        self.counters.aged += (before - self.map.len()) as u64;
    }

    pub fn iter(&self) -> impl Iterator<Item = (u16, MacAddr, &FdbEntry)> {
        self.map.iter().map(|((v, m), e)| (*v, *m, e))
    }

    pub fn counters(&self) -> &FdbCounters {
        &self.counters
    }
}
