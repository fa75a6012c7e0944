//! Encode-only response messages. They hold the snapshot's shared resource bodies, so a push
//! to many streams encodes each resource straight from the one `Arc<Any>` instead of copying
//! it into a generated `DiscoveryResponse` per stream. Field numbers and wire format are those
//! of envoy.service.discovery.v3.DiscoveryResponse / DeltaDiscoveryResponse / Resource, so
//! clients decode them as the generated types.

use std::sync::Arc;

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, message, skip_field, string};
use prost::{DecodeError, Message};

use crate::Any;

/// `DiscoveryResponse`: version_info = 1, resources = 2, type_url = 4, nonce = 5.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SotwResponse {
    pub(crate) version_info: String,
    pub(crate) resources: Vec<Arc<Any>>,
    pub(crate) type_url: String,
    pub(crate) nonce: String,
}

/// `DeltaDiscoveryResponse`: system_version_info = 1, resources = 2, type_url = 4, nonce = 5,
/// removed_resources = 6.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct DeltaResponse {
    pub(crate) system_version_info: String,
    pub(crate) resources: Vec<WireResource>,
    pub(crate) type_url: String,
    pub(crate) removed_resources: Vec<String>,
    pub(crate) nonce: String,
}

/// `Resource`: version = 1, resource = 2, name = 3.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WireResource {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) body: Arc<Any>,
}

fn str_len(tag: u32, v: &String) -> usize {
    if v.is_empty() {
        0
    } else {
        string::encoded_len(tag, v)
    }
}

fn put_str(tag: u32, v: &String, buf: &mut impl BufMut) {
    if !v.is_empty() {
        string::encode(tag, v, buf);
    }
}

/// These messages are only ever sent; decoding one just skips its fields.
macro_rules! encode_only {
    ($t:ty) => {
        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: WireType,
            buf: &mut impl Buf,
            ctx: DecodeContext,
        ) -> Result<(), DecodeError> {
            skip_field(wire_type, tag, buf, ctx)
        }

        fn clear(&mut self) {
            *self = <$t>::default();
        }
    };
}

impl Message for SotwResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, &self.version_info, buf);
        for r in &self.resources {
            message::encode(2, &**r, buf);
        }
        put_str(4, &self.type_url, buf);
        put_str(5, &self.nonce, buf);
    }

    fn encoded_len(&self) -> usize {
        str_len(1, &self.version_info)
            + self
                .resources
                .iter()
                .map(|r| message::encoded_len(2, &**r))
                .sum::<usize>()
            + str_len(4, &self.type_url)
            + str_len(5, &self.nonce)
    }

    encode_only!(SotwResponse);
}

impl Message for DeltaResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, &self.system_version_info, buf);
        for r in &self.resources {
            message::encode(2, r, buf);
        }
        put_str(4, &self.type_url, buf);
        put_str(5, &self.nonce, buf);
        for name in &self.removed_resources {
            string::encode(6, name, buf);
        }
    }

    fn encoded_len(&self) -> usize {
        str_len(1, &self.system_version_info)
            + self
                .resources
                .iter()
                .map(|r| message::encoded_len(2, r))
                .sum::<usize>()
            + str_len(4, &self.type_url)
            + str_len(5, &self.nonce)
            + string::encoded_len_repeated(6, &self.removed_resources)
    }

    encode_only!(DeltaResponse);
}

impl Message for WireResource {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, &self.version, buf);
        message::encode(2, &*self.body, buf);
        put_str(3, &self.name, buf);
    }

    fn encoded_len(&self) -> usize {
        str_len(1, &self.version) + message::encoded_len(2, &*self.body) + str_len(3, &self.name)
    }

    encode_only!(WireResource);
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };

    fn body(v: &[u8]) -> Arc<Any> {
        Arc::new(Any {
            type_url: crate::type_url::CLUSTER.into(),
            value: v.to_vec(),
        })
    }

    #[test]
    fn sotw_response_decodes_as_the_generated_type() {
        let r = SotwResponse {
            version_info: "v1".into(),
            resources: vec![body(b"a"), body(b"")],
            type_url: crate::type_url::CLUSTER.into(),
            nonce: "7".into(),
        };
        let bytes = r.encode_to_vec();
        assert_eq!(bytes.len(), r.encoded_len());
        let decoded = DiscoveryResponse::decode(bytes.as_slice()).unwrap();
        let expected = DiscoveryResponse {
            version_info: "v1".into(),
            resources: r.resources.iter().map(|b| (**b).clone()).collect(),
            type_url: crate::type_url::CLUSTER.into(),
            nonce: "7".into(),
            ..Default::default()
        };
        assert_eq!(decoded, expected);
        assert_eq!(expected.encode_to_vec(), bytes);
    }

    #[test]
    fn delta_response_decodes_as_the_generated_type() {
        let r = DeltaResponse {
            system_version_info: "v2".into(),
            resources: vec![WireResource {
                name: "c1".into(),
                version: "x".into(),
                body: body(b"abc"),
            }],
            type_url: crate::type_url::CLUSTER.into(),
            removed_resources: vec!["c2".into(), "c3".into()],
            nonce: "8".into(),
        };
        let bytes = r.encode_to_vec();
        assert_eq!(bytes.len(), r.encoded_len());
        let decoded = DeltaDiscoveryResponse::decode(bytes.as_slice()).unwrap();
        let expected = DeltaDiscoveryResponse {
            system_version_info: "v2".into(),
            resources: vec![Resource {
                name: "c1".into(),
                version: "x".into(),
                resource: Some((*r.resources[0].body).clone()),
                ..Default::default()
            }],
            type_url: crate::type_url::CLUSTER.into(),
            removed_resources: vec!["c2".into(), "c3".into()],
            nonce: "8".into(),
            ..Default::default()
        };
        assert_eq!(decoded, expected);
        assert_eq!(expected.encode_to_vec(), bytes);
        // Decoding into the encode-only type is harmless.
        assert_eq!(
            DeltaResponse::decode(bytes.as_slice()).unwrap(),
            DeltaResponse::default()
        );
    }
}
