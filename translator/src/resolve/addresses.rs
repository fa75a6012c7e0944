//! Gateway addresses: spec.addresses, and stable addresses from the address pool.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use gateway_api::apis::experimental::gateways::Gateway;
use serde_json::{Value, json};

use crate::Options;
use crate::input::ObjectKey;

/// Hands out stable addresses from `Options::address_pool`.
pub struct AddressPool {
    base: u32,
    size: u32,
    used: BTreeSet<u32>,
}

impl AddressPool {
    pub fn new(options: &Options) -> Option<Self> {
        let (ip, len) = options.address_pool?;
        let len = len.min(32);
        let size = if len == 0 {
            u32::MAX
        } else {
            1u32 << (32 - len)
        };
        let base = u32::from(ip) & !(size.wrapping_sub(1));
        Some(AddressPool {
            base,
            size,
            used: BTreeSet::new(),
        })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.base) < self.size
    }

    fn reserve(&mut self, ip: Ipv4Addr) {
        self.used.insert(u32::from(ip).wrapping_sub(self.base));
    }

    fn assign(&mut self, id: &str) -> Option<String> {
        // Skip the network and broadcast addresses when the pool is big enough to have them.
        let (first, count) = if self.size > 2 {
            (1, self.size - 2)
        } else {
            (0, self.size)
        };
        let start = (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % u64::from(count)) as u32;
        for probe in 0..count {
            let offset = first + (start + probe) % count;
            if self.used.insert(offset) {
                return Some(Ipv4Addr::from(self.base.wrapping_add(offset)).to_string());
            }
        }
        None
    }
}

/// The outcome of spec.addresses.
pub struct Addresses {
    pub bind: Vec<String>,
    pub status: Vec<Value>,
    /// Accepted=False UnsupportedAddress message.
    pub unsupported: Option<String>,
    /// Programmed=False AddressNotUsable message.
    pub not_usable: Option<String>,
}

pub fn addresses(
    gw: &Gateway,
    key: &ObjectKey,
    pool: &mut Option<AddressPool>,
    options: &Options,
) -> Addresses {
    let mut out = Addresses {
        bind: Vec::new(),
        status: Vec::new(),
        unsupported: None,
        not_usable: None,
    };
    let mut wants_assigned = false;
    for a in gw.spec.addresses.iter().flatten() {
        let type_ = a.r#type.clone().unwrap_or_else(|| "IPAddress".into());
        let value = a.value.clone().filter(|v| !v.is_empty());
        match (value, type_.as_str()) {
            (Some(v), "IPAddress") => match v.parse::<Ipv4Addr>() {
                // With a pool, only its addresses are Portico's to bind.
                Ok(ip) if pool.as_ref().is_none_or(|p| p.contains(ip)) => {
                    if let Some(p) = pool.as_mut() {
                        p.reserve(ip);
                    }
                    out.bind.push(v.clone());
                    out.status.push(json!({"type": "IPAddress", "value": v}));
                }
                Ok(_) => out.not_usable = Some(format!("address {v} is outside the address pool")),
                Err(_) => out.not_usable = Some(format!("address {v:?} is not an IPv4 address")),
            },
            (None, "IPAddress") => wants_assigned = true,
            (_, other) => {
                out.unsupported = Some(format!(
                    "address type {other:?} is not supported (IPAddress only)"
                ))
            }
        }
    }
    if out.bind.is_empty() || wants_assigned {
        let assigned = pool
            .as_mut()
            .and_then(|p| p.assign(&format!("{}/{}", key.namespace, key.name)));
        match assigned {
            Some(ip) => {
                out.status.push(json!({"type": "IPAddress", "value": ip}));
                out.bind.push(ip);
            }
            None => {
                if let Some(d) = &options.default_address {
                    let type_ = if d.parse::<std::net::IpAddr>().is_ok() {
                        "IPAddress"
                    } else {
                        "Hostname"
                    };
                    out.status.push(json!({"type": type_, "value": d}));
                }
            }
        }
    }
    out
}
