//! Encode once, send to many. Streams that send the same response (same type, version and
//! resources: every stream of a fleet after a change, or on connecting) share one encoded body;
//! only the nonce differs per stream. It goes in front of the body as its own field (protobuf
//! fields may come in any order, and a message is the concatenation of its fields), so a
//! response is a small per-stream head plus a reference to the shared bytes, and HTTP/2 holds
//! the same bytes for every stream it still has to write them to.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tonic::Status;

use crate::cache::lock;

/// `nonce` in DiscoveryResponse and DeltaDiscoveryResponse.
const NONCE: u32 = 5;

/// Compression flag (1 byte) and length (4 bytes) in front of every gRPC message.
pub(crate) const GRPC_HEADER: usize = 5;

/// A response body without its nonce, and the resource names it carries (for NACKs).
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) body: Bytes,
    pub(crate) names: Arc<[String]>,
}

/// One response of one stream: gRPC header and nonce, then the shared body.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) head: Bytes,
    pub(crate) body: Bytes,
}

impl Outgoing {
    /// The response `body` with `nonce` (field 5 in both DiscoveryResponse and
    /// DeltaDiscoveryResponse), framed for gRPC.
    pub(crate) fn new(body: &Bytes, nonce: &str) -> Result<Self, Status> {
        let nonce_len = if nonce.is_empty() {
            0
        } else {
            key_len(NONCE) + encoded_len_varint(nonce.len() as u64) + nonce.len()
        };
        let len = body.len() + nonce_len;
        let len32 = u32::try_from(len)
            .map_err(|_| Status::resource_exhausted(format!("response of {len} bytes")))?;
        let mut head = BytesMut::with_capacity(GRPC_HEADER + nonce_len);
        head.put_u8(0);
        head.put_u32(len32);
        if !nonce.is_empty() {
            encode_key(NONCE, WireType::LengthDelimited, &mut head);
            encode_varint(nonce.len() as u64, &mut head);
            head.put_slice(nonce.as_bytes());
        }
        Ok(Outgoing {
            head: head.freeze(),
            body: body.clone(),
        })
    }

    /// Bytes of the protobuf message (without the gRPC header).
    pub(crate) fn message_len(&self) -> usize {
        self.head.len() + self.body.len() - GRPC_HEADER
    }
}

/// Identifies a response body by content: type, version, (name, version) of every resource,
/// removed names. Equal resource versions are equal bytes (content hashes).
pub(crate) struct Key(xxhash_rust::xxh3::Xxh3);

impl Key {
    pub(crate) fn new(kind: &str, type_url: &str, version: &str) -> Self {
        let mut key = Key(xxhash_rust::xxh3::Xxh3::new());
        key.add(kind);
        key.add(type_url);
        key.add(version);
        key
    }

    pub(crate) fn add(&mut self, s: &str) {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
    }

    fn finish(&self) -> u128 {
        self.0.digest128()
    }
}

type Slot = OnceLock<Arc<Encoded>>;

/// An encoded body as one stream holds it: while any stream holds it (its response is in
/// flight, i.e. not yet ACKed) or it is among the recent ones, other streams find and reuse
/// it; then it is freed.
#[derive(Clone, Debug)]
pub(crate) struct SharedBody {
    _slot: Arc<Slot>,
    pub(crate) encoded: Arc<Encoded>,
}

/// Bodies kept after the last stream holding them got its ACK, newest first out last: streams
/// that connect one after the other still share. At most this many bytes (and the newest).
const RECENT_BYTES: usize = 8 << 20;

#[derive(Default)]
struct Entries {
    map: HashMap<u128, Weak<Slot>>,
    /// Prune dead entries once the map grows past this.
    prune_at: usize,
    recent: VecDeque<(Arc<Slot>, usize)>,
    recent_bytes: usize,
}

/// Response bodies in flight by [`Key`], shared by every stream of the server.
#[derive(Default)]
pub(crate) struct Responses {
    entries: Mutex<Entries>,
}

impl Responses {
    /// The body for `key`, encoded by `encode` unless a stream holds it already (then the
    /// flag is `false`). Streams that ask for the same body at once wait for the first one's
    /// encoding instead of repeating it.
    pub(crate) fn get_or_encode(
        &self,
        key: Key,
        encode: impl FnOnce() -> Encoded,
    ) -> (SharedBody, bool) {
        let key = key.finish();
        let slot = {
            let mut entries = lock(&self.entries);
            match entries.map.get(&key).and_then(Weak::upgrade) {
                Some(slot) => slot,
                None => {
                    let slot = Arc::new(Slot::new());
                    if entries.map.len() >= entries.prune_at {
                        entries.map.retain(|_, w| w.strong_count() > 0);
                        entries.prune_at = (2 * entries.map.len()).max(64);
                    }
                    entries.map.insert(key, Arc::downgrade(&slot));
                    slot
                }
            }
        };
        let mut fresh = false;
        let encoded = slot
            .get_or_init(|| {
                fresh = true;
                Arc::new(encode())
            })
            .clone();
        if fresh {
            let size = encoded.body.len();
            let mut entries = lock(&self.entries);
            entries.recent.push_back((slot.clone(), size));
            entries.recent_bytes += size;
            while entries.recent_bytes > RECENT_BYTES && entries.recent.len() > 1 {
                if let Some((_, size)) = entries.recent.pop_front() {
                    entries.recent_bytes -= size;
                }
            }
        }
        let body = SharedBody {
            _slot: slot,
            encoded,
        };
        (body, fresh)
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        let entries = lock(&self.entries);
        entries
            .map
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use prost::Message;

    #[test]
    fn head_and_shared_body_decode_as_one_response() {
        let full = DiscoveryResponse {
            version_info: "v1".into(),
            type_url: crate::type_url::CLUSTER.into(),
            nonce: "42".into(),
            ..Default::default()
        };
        let without_nonce = DiscoveryResponse {
            nonce: String::new(),
            ..full.clone()
        };
        let body = Bytes::from(without_nonce.encode_to_vec());
        let out = Outgoing::new(&body, "42").expect("fits");
        let mut bytes = out.head.to_vec();
        bytes.extend_from_slice(&out.body);
        assert_eq!(bytes[0], 0);
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, bytes.len() - GRPC_HEADER);
        assert_eq!(len, out.message_len());
        assert_eq!(len, full.encoded_len());
        assert_eq!(
            DiscoveryResponse::decode(&bytes[GRPC_HEADER..]).expect("decode"),
            full
        );
    }

    #[test]
    fn equal_keys_share_one_encoding() {
        let responses = Responses::default();
        let key = |v: &str| {
            let mut k = Key::new("sotw", "t", v);
            k.add("name");
            k
        };
        let encodes = std::cell::Cell::new(0);
        let encode = |b: &'static [u8]| {
            encodes.set(encodes.get() + 1);
            Encoded {
                body: Bytes::from_static(b),
                names: Arc::from(vec!["name".to_string()]),
            }
        };
        let (a, fresh_a) = responses.get_or_encode(key("1"), || encode(b"a"));
        let (b, fresh_b) = responses.get_or_encode(key("1"), || encode(b"x"));
        let (c, _) = responses.get_or_encode(key("2"), || encode(b"c"));
        assert!(Arc::ptr_eq(&a.encoded, &b.encoded) && fresh_a && !fresh_b);
        assert_eq!(&c.encoded.body[..], b"c");
        assert_eq!(encodes.get(), 2);
        drop((a, b, c));
        assert_eq!(responses.live(), 2);
        // Once no stream holds a body and it left the recent ones, it is gone.
        let big = || Encoded {
            body: Bytes::from(vec![0; RECENT_BYTES]),
            names: Arc::from(Vec::new()),
        };
        let (_, _) = responses.get_or_encode(key("3"), big);
        assert_eq!(responses.live(), 1);
        let (_, fresh) = responses.get_or_encode(key("1"), || encode(b"a"));
        assert!(fresh && encodes.get() == 3);
    }
}
