//! How many connections the server holds, in total and per client address, so that a client
//! opening thousands of connections exhausts neither file descriptors nor memory, nor the slots
//! of everyone else. Past the total, new connections wait in the kernel's backlog until one
//! closes; past an address's share, they are closed at once. An IPv6 client is counted by its
//! /64, which one host usually has whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub total: usize,
    /// Connections one address holds at once.
    pub per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { total: 1024, per_address: 64 }
    }
}

/// File descriptors kept for everything but connections: the bundle files, the listener, stdio.
const OTHER_FILES: u64 = 256;

/// Raises the soft limit of open files (up to the hard one) so that `total` connections fit;
/// returns how many fit.
pub fn fit_open_files(total: usize) -> usize {
    let limit = getrlimit(Resource::Nofile);
    let wanted = total as u64 + OTHER_FILES;
    let soft = match limit.current {
        Some(soft) if soft < wanted => {
            let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
            let set = setrlimit(Resource::Nofile, Rlimit { current: Some(raised), maximum: limit.maximum });
            if set.is_ok() { raised } else { soft }
        }
        _ => wanted,
    };
    usize::try_from(soft.saturating_sub(OTHER_FILES)).unwrap_or(total).clamp(1, total)
}

/// The connections open per address.
pub struct Slots {
    per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's share; freed when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    address: IpAddr,
}

impl Slots {
    pub fn new(per_address: usize) -> Arc<Self> {
        Arc::new(Slots { per_address, open: Mutex::new(HashMap::new()) })
    }

    /// A slot for a connection from `peer`, unless its address holds its share already.
    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let address = counted_as(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(address).or_insert(0);
        if *n >= self.per_address {
            return None;
        }
        *n += 1;
        Some(Slot { slots: Arc::clone(self), address })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// The address a connection counts against: IPv4 as it is (also when mapped into IPv6), IPv6 by
/// its /64.
fn counted_as(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_its_share_and_no_more_and_gets_slots_back_as_connections_close() {
        let slots = Slots::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = slots.take(ip("10.0.0.1")).unwrap();
        let _b = slots.take(ip("::ffff:10.0.0.1")).unwrap();
        assert!(slots.take(ip("10.0.0.1")).is_none(), "a third from the same address");
        assert!(slots.take(ip("10.0.0.2")).is_some(), "another address");
        drop(a);
        assert!(slots.take(ip("10.0.0.1")).is_some());
        let _c = slots.take(ip("2001:db8::1")).unwrap();
        let _d = slots.take(ip("2001:db8::ffff:2")).unwrap();
        assert!(slots.take(ip("2001:db8::3")).is_none(), "one /64 is one client");
        assert!(slots.take(ip("2001:db8:0:1::1")).is_some());
    }

    #[test]
    fn the_open_files_limit_is_raised_for_the_connections_or_they_are_fewer() {
        let fit = fit_open_files(1024);
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        assert!((1..=1024).contains(&fit));
        assert!(fit as u64 + OTHER_FILES <= soft || fit == 1, "{fit} connections, soft limit {soft}");
    }
}
