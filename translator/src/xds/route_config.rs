//! A RouteConfiguration kept as shared pieces: each Route once, behind an `Arc`, as its
//! encoding. A port with thousands of routes then costs, per call, a list of `Arc`s and
//! (when encoded) one copy of the route encodings, instead of a deep copy of every Route and
//! a fresh encode of the whole configuration.
//!
//! Protobuf messages concatenate field by field, so the encoding is assembled from the
//! pieces: the head's fields before the repeated field, one (tag, length, bytes) entry per
//! element, then the head's remaining fields. The result is byte for byte what prost gives
//! for the equivalent proto (`to_proto`), as the tests below check.

use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::encoding::{self, WireType};

use crate::render;

/// One Route, held as its encoding only: the decoded proto is several times larger, and
/// only tests and `to_proto` need it (decoded on demand). `Eq` lets comparisons of shared
/// lists of them skip equal pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteProto {
    encoded: Box<[u8]>,
}

impl RouteProto {
    pub fn new(proto: Route) -> Self {
        Self {
            encoded: proto.encode_to_vec().into_boxed_slice(),
        }
    }

    /// The proto, decoded from the encoding (a fresh copy on every call).
    pub fn proto(&self) -> Route {
        // These bytes came from `encode_to_vec` of a valid Route, so they decode.
        Route::decode(&*self.encoded).unwrap_or_default()
    }

    fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// A VirtualHost whose `routes` are shared pieces; `head.routes` is always empty.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualHostParts {
    pub head: VirtualHost,
    /// Shared with `RdsMemo`, which hands out the same list while the routes are the same.
    pub routes: Arc<Vec<Arc<RouteProto>>>,
}

/// A RouteConfiguration as pieces; `head.virtual_hosts` is always empty.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    head: RouteConfiguration,
    virtual_hosts: Vec<VirtualHostParts>,
}

impl RouteConfig {
    /// `head` gives every field but `virtual_hosts` (which it must leave empty).
    pub fn new(head: RouteConfiguration, virtual_hosts: Vec<VirtualHostParts>) -> Self {
        debug_assert!(head.virtual_hosts.is_empty());
        Self {
            name: head.name.clone(),
            head,
            virtual_hosts,
        }
    }

    pub fn virtual_hosts(&self) -> &[VirtualHostParts] {
        &self.virtual_hosts
    }

    /// The whole proto (a deep copy of every route).
    pub fn to_proto(&self) -> RouteConfiguration {
        RouteConfiguration {
            virtual_hosts: self
                .virtual_hosts
                .iter()
                .map(|vh| VirtualHost {
                    routes: vh.routes.iter().map(|r| r.proto()).collect(),
                    ..vh.head.clone()
                })
                .collect(),
            ..self.head.clone()
        }
    }

    /// `to_proto().encode_to_vec()`, from the cached route encodings.
    pub fn encode(&self) -> Vec<u8> {
        // Field 1 (name) comes before the repeated field 2 (virtual_hosts); the rest after.
        let tail = RouteConfiguration {
            name: String::new(),
            ..self.head.clone()
        }
        .encode_to_vec();
        let hosts: Vec<(Vec<u8>, Vec<u8>, usize)> = self
            .virtual_hosts
            .iter()
            .map(|vh| {
                let (before, after) = vh.split();
                let len = before.len() + after.len() + entries_len(3, &vh.routes);
                (before, after, len)
            })
            .collect();
        let mut len = tail.len() + string_len(1, &self.name);
        len += hosts
            .iter()
            .map(|(_, _, l)| entry_len(2, *l))
            .sum::<usize>();
        let mut out = Vec::with_capacity(len);
        if !self.name.is_empty() {
            encoding::string::encode(1, &self.name, &mut out);
        }
        for ((before, after, l), vh) in hosts.iter().zip(&self.virtual_hosts) {
            encoding::encode_key(2, WireType::LengthDelimited, &mut out);
            encoding::encode_varint(*l as u64, &mut out);
            out.extend_from_slice(before);
            for r in vh.routes.iter() {
                let bytes = r.encoded();
                encoding::encode_key(3, WireType::LengthDelimited, &mut out);
                encoding::encode_varint(bytes.len() as u64, &mut out);
                out.extend_from_slice(bytes);
            }
            out.extend_from_slice(after);
        }
        out.extend_from_slice(&tail);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Packed as an `Any`, like `render::pack(&self.to_proto())`.
    pub fn pack(&self) -> Any {
        Any {
            type_url: render::ROUTE.to_string(),
            value: self.encode(),
        }
    }
}

impl VirtualHostParts {
    /// The head's encoded fields before `routes` (name 1, domains 2) and after (the rest).
    fn split(&self) -> (Vec<u8>, Vec<u8>) {
        let before = VirtualHost {
            name: self.head.name.clone(),
            domains: self.head.domains.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let after = VirtualHost {
            name: String::new(),
            domains: Vec::new(),
            ..self.head.clone()
        }
        .encode_to_vec();
        (before, after)
    }
}

fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        entry_len(tag, s.len())
    }
}

fn entry_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

fn entries_len(tag: u32, routes: &[Arc<RouteProto>]) -> usize {
    routes
        .iter()
        .map(|r| entry_len(tag, r.encoded().len()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::route::v3::{RouteMatch, route_match};
    use envoy_types::pb::google::protobuf::BoolValue;

    fn route(i: usize, long: bool) -> Route {
        let prefix = if long {
            format!("/{}", "x".repeat(200 + i))
        } else {
            format!("/r-{i}")
        };
        Route {
            name: format!("route-{i}"),
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix(prefix)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn parts(name: &str, domains: &[&str], routes: usize, long: bool) -> VirtualHostParts {
        VirtualHostParts {
            head: VirtualHost {
                name: name.into(),
                domains: domains.iter().map(|d| d.to_string()).collect(),
                require_tls: 1,
                ..Default::default()
            },
            routes: Arc::new(
                (0..routes)
                    .map(|i| Arc::new(RouteProto::new(route(i, long))))
                    .collect(),
            ),
        }
    }

    #[test]
    fn encoding_matches_prost() {
        let heads = [
            RouteConfiguration::default(),
            RouteConfiguration {
                name: "http-8080".into(),
                validate_clusters: Some(BoolValue { value: false }),
                ignore_port_in_host_matching: true,
                ..Default::default()
            },
        ];
        let hosts = [
            vec![],
            vec![parts("", &[], 0, false)],
            vec![parts("a", &["*"], 1, false), parts("b", &[], 3, true)],
            // Lengths past one varint byte, at every level.
            vec![parts("big", &["x.example", "y.example"], 300, true)],
        ];
        for head in &heads {
            for vhosts in &hosts {
                let rc = RouteConfig::new(head.clone(), vhosts.clone());
                assert_eq!(rc.encode(), rc.to_proto().encode_to_vec());
                assert_eq!(rc.pack(), render::pack(&rc.to_proto()));
            }
        }
    }
}
