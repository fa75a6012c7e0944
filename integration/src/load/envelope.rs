//! The parts of a DiscoveryResponse / DeltaDiscoveryResponse a simulated Envoy reads on every
//! response: version, nonce, type and (delta) resource names and versions. Resource bodies are
//! skipped; they are read (see [`sotw_bodies`], [`Rope::slice`]) only when the fleet-wide
//! decoder has not seen their content version yet. Requests are encoded by hand for the same
//! reason: an ACK repeats a subscription whose encoding is kept, not rebuilt.

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::encoding::{
    DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint, skip_field,
    string,
};

use super::rope::{Cursor, Rope};

/// DiscoveryResponse without its resources.
#[derive(Debug, Default)]
pub struct SotwEnvelope {
    pub version_info: String,
    pub type_url: String,
    pub nonce: String,
}

/// One resource of a DeltaDiscoveryResponse; the body as a range of the message.
#[derive(Debug, Default)]
pub struct DeltaResource {
    pub name: String,
    pub version: String,
    pub body: Option<(usize, usize)>,
}

/// DeltaDiscoveryResponse without resource bodies.
#[derive(Debug, Default)]
pub struct DeltaEnvelope {
    pub type_url: String,
    pub nonce: String,
    pub resources: Vec<DeltaResource>,
    pub removed: Vec<String>,
}

/// Calls `field` with (tag, wire type, cursor) for every field of the next `len` bytes;
/// `field` returns whether it consumed the field, otherwise it is skipped.
fn fields(
    buf: &mut Cursor<'_>,
    len: usize,
    mut field: impl FnMut(u32, WireType, &mut Cursor<'_>) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let end = buf.remaining().checked_sub(len).context("truncated")?;
    while buf.remaining() > end {
        let (tag, wire_type) = decode_key(buf)?;
        if !field(tag, wire_type, buf)? {
            skip_field(wire_type, tag, buf, DecodeContext::default())?;
        }
    }
    anyhow::ensure!(buf.remaining() == end, "field overran its message");
    Ok(())
}

fn read_string(buf: &mut Cursor<'_>) -> anyhow::Result<String> {
    let len = decode_varint(buf)? as usize;
    anyhow::ensure!(len <= buf.remaining(), "truncated string");
    let mut bytes = vec![0; len];
    buf.copy_to_slice(&mut bytes);
    Ok(String::from_utf8(bytes)?)
}

/// (start, len) of a length-delimited field, skipped.
fn skip_bytes(rope: &Rope, buf: &mut Cursor<'_>) -> anyhow::Result<(usize, usize)> {
    let len = decode_varint(buf)? as usize;
    anyhow::ensure!(len <= buf.remaining(), "truncated field");
    let start = buf.position(rope);
    buf.advance(len);
    Ok((start, len))
}

const LEN: WireType = WireType::LengthDelimited;

pub fn sotw(rope: &Rope) -> anyhow::Result<SotwEnvelope> {
    let mut e = SotwEnvelope::default();
    let mut buf = rope.cursor();
    fields(&mut buf, rope.len(), |tag, wire_type, buf| {
        match (tag, wire_type) {
            (1, LEN) => e.version_info = read_string(buf)?,
            (4, LEN) => e.type_url = read_string(buf)?,
            (5, LEN) => e.nonce = read_string(buf)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(e)
}

/// The resources of a DiscoveryResponse (field 2), decoded.
pub fn sotw_bodies(rope: &Rope) -> anyhow::Result<Vec<Any>> {
    let mut out = Vec::new();
    let mut buf = rope.cursor();
    fields(&mut buf, rope.len(), |tag, wire_type, buf| {
        if (tag, wire_type) != (2, LEN) {
            return Ok(false);
        }
        let (start, len) = skip_bytes(rope, buf)?;
        out.push(Any::decode(rope.slice(start, len))?);
        Ok(true)
    })?;
    Ok(out)
}

pub fn delta(rope: &Rope) -> anyhow::Result<DeltaEnvelope> {
    let mut e = DeltaEnvelope::default();
    let mut buf = rope.cursor();
    fields(&mut buf, rope.len(), |tag, wire_type, buf| {
        match (tag, wire_type) {
            (2, LEN) => {
                let len = decode_varint(buf)? as usize;
                let mut r = DeltaResource::default();
                fields(buf, len, |tag, wire_type, buf| {
                    match (tag, wire_type) {
                        (1, LEN) => r.version = read_string(buf)?,
                        (2, LEN) => r.body = Some(skip_bytes(rope, buf)?),
                        (3, LEN) => r.name = read_string(buf)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                e.resources.push(r);
            }
            (4, LEN) => e.type_url = read_string(buf)?,
            (5, LEN) => e.nonce = read_string(buf)?,
            (6, LEN) => e.removed.push(read_string(buf)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(e)
}

/// A delta resource's body, decoded.
pub fn delta_body(rope: &Rope, range: (usize, usize)) -> anyhow::Result<Any> {
    Ok(Any::decode(rope.slice(range.0, range.1))?)
}

/// `resource_names` (field 3 of DiscoveryRequest), encoded once per subscription.
pub fn encode_names<'a>(names: impl Iterator<Item = &'a String>) -> Bytes {
    let mut buf = BytesMut::new();
    for name in names {
        string::encode(3, name, &mut buf);
    }
    buf.freeze()
}

/// A framed DiscoveryRequest without node: version_info = 1, resource_names = 3 (already
/// encoded), type_url = 4, response_nonce = 5.
pub fn sotw_request(version: &str, names: &Bytes, type_url: &str, nonce: &str) -> Bytes {
    let mut body = BytesMut::with_capacity(names.len() + type_url.len() + 64);
    body.put_bytes(0, 5);
    for (tag, value) in [(1, version), (4, type_url), (5, nonce)] {
        if !value.is_empty() {
            encode_key(tag, LEN, &mut body);
            encode_varint(value.len() as u64, &mut body);
            body.put_slice(value.as_bytes());
        }
    }
    body.put_slice(names);
    let len = (body.len() - 5) as u32;
    body[1..5].copy_from_slice(&len.to_be_bytes());
    body.freeze()
}

/// Any request message, framed for gRPC.
pub fn framed(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(len + 5);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // Cannot fail: the buffer has room for the whole message.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
    };

    /// The message as many small chunks, as HTTP/2 may deliver it.
    fn rope(bytes: Vec<u8>) -> Rope {
        let mut framer = super::super::rope::Framer::default();
        let mut framed = vec![0];
        framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        framed.extend(bytes);
        for chunk in framed.chunks(3) {
            framer.push(Bytes::copy_from_slice(chunk));
        }
        framer.next_message().unwrap().unwrap()
    }

    fn any(v: &[u8]) -> Any {
        Any {
            type_url: "t".into(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn sotw_envelope_and_bodies() {
        let r = DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![any(b"abc"), any(&[7; 300])],
            type_url: "type".into(),
            nonce: "n".into(),
            ..Default::default()
        };
        let rope = rope(r.encode_to_vec());
        let e = sotw(&rope).unwrap();
        assert_eq!(
            (&*e.version_info, &*e.type_url, &*e.nonce),
            ("v1", "type", "n")
        );
        assert_eq!(sotw_bodies(&rope).unwrap(), r.resources);
        assert!(sotw(&Rope::from(Bytes::from_static(&[0x0a, 5, 1]))).is_err());
    }

    #[test]
    fn delta_envelope_and_bodies() {
        let r = DeltaDiscoveryResponse {
            resources: vec![
                Resource {
                    name: "a".into(),
                    version: "1".into(),
                    resource: Some(any(b"x")),
                    ..Default::default()
                },
                Resource {
                    name: "b".into(),
                    version: "2".into(),
                    ..Default::default()
                },
            ],
            type_url: "type".into(),
            removed_resources: vec!["c".into()],
            nonce: "7".into(),
            ..Default::default()
        };
        let rope = rope(r.encode_to_vec());
        let e = delta(&rope).unwrap();
        assert_eq!((&*e.type_url, &*e.nonce), ("type", "7"));
        assert_eq!(e.removed, vec!["c".to_string()]);
        let names: Vec<_> = e
            .resources
            .iter()
            .map(|r| (&*r.name, &*r.version))
            .collect();
        assert_eq!(names, vec![("a", "1"), ("b", "2")]);
        let body = e.resources[0].body.unwrap();
        assert_eq!(delta_body(&rope, body).unwrap(), any(b"x"));
        assert!(e.resources[1].body.is_none());
    }

    #[test]
    fn hand_encoded_requests_decode_as_the_generated_type() {
        let names = ["a".to_string(), "b".to_string()];
        let bytes = sotw_request("v", &encode_names(names.iter()), "t", "3");
        let decoded = DiscoveryRequest::decode(&bytes[5..]).unwrap();
        let expected = DiscoveryRequest {
            version_info: "v".into(),
            resource_names: names.to_vec(),
            type_url: "t".into(),
            response_nonce: "3".into(),
            ..Default::default()
        };
        assert_eq!(decoded, expected);
        assert_eq!(&framed(&expected)[5..], &expected.encode_to_vec()[..]);
    }
}
