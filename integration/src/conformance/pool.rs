//! Address pools for concurrent runs: each running case leases its own `127.0.N.0/24`, so its
//! Gateways can all listen on port 80 without meeting another case's (or another process's).

use std::fs::{File, OpenOptions, TryLockError};

use anyhow::bail;

/// Third octets handed out; low ones are left to anything else using 127.0.0.x.
const FIRST: u8 = 100;
const LAST: u8 = 250;

/// A leased `/24`; released when dropped (the lock file's lock goes with the handle).
pub struct PoolLease {
    pub octet: u8,
    _lock: File,
}

impl PoolLease {
    pub fn acquire() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir();
        for octet in FIRST..=LAST {
            let path = dir.join(format!("portico-conformance-pool-{octet}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => return Ok(Self { octet, _lock: file }),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(err)) => return Err(err.into()),
            }
        }
        bail!("no free address pool between 127.0.{FIRST}.0/24 and 127.0.{LAST}.0/24")
    }

    /// The pool as `--address-pool` takes it.
    pub fn cidr(&self) -> String {
        format!("127.0.{}.0/24", self.octet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_leases_differ() {
        let a = PoolLease::acquire().unwrap();
        let b = PoolLease::acquire().unwrap();
        assert_ne!(a.cidr(), b.cidr());
    }
}
