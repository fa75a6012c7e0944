//! One gRPC message as the HTTP/2 DATA chunks it arrived in. The simulator never copies a
//! response into one buffer: it reads the few envelope fields through a [`Cursor`] and keeps
//! the chunks only until the response is handled.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Compression flag (1 byte) and length (4 bytes) in front of every gRPC message.
const GRPC_HEADER: usize = 5;

/// A message's bytes, in the chunks they came in.
#[derive(Clone, Debug, Default)]
pub struct Rope {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Rope {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            chunks: &self.chunks,
            index: 0,
            offset: 0,
            remaining: self.len,
        }
    }

    /// `len` bytes from `start`: shared when one chunk holds them, copied otherwise.
    pub fn slice(&self, start: usize, len: usize) -> Bytes {
        let mut cursor = self.cursor();
        cursor.advance(start.min(self.len));
        cursor.copy_to_bytes(len.min(cursor.remaining()))
    }
}

impl From<Bytes> for Rope {
    fn from(b: Bytes) -> Self {
        Rope {
            len: b.len(),
            chunks: vec![b],
        }
    }
}

/// Reads a [`Rope`] as a [`Buf`] (what prost's decoding helpers take).
pub struct Cursor<'a> {
    chunks: &'a [Bytes],
    index: usize,
    offset: usize,
    remaining: usize,
}

impl Cursor<'_> {
    /// Bytes read so far.
    pub fn position(&self, rope: &Rope) -> usize {
        rope.len - self.remaining
    }
}

impl Buf for Cursor<'_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.get(self.index) {
            Some(c) => &c[self.offset..],
            None => &[],
        }
    }

    fn advance(&mut self, mut n: usize) {
        n = n.min(self.remaining);
        self.remaining -= n;
        while n > 0 {
            let Some(chunk) = self.chunks.get(self.index) else {
                return;
            };
            let left = chunk.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.index += 1;
            self.offset = 0;
        }
        // Never rest at the end of a chunk: `chunk()` must show the next bytes.
        while self
            .chunks
            .get(self.index)
            .is_some_and(|c| self.offset == c.len() && self.remaining > 0)
        {
            self.index += 1;
            self.offset = 0;
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        let len = len.min(self.remaining);
        if let Some(chunk) = self.chunks.get(self.index)
            && chunk.len() - self.offset >= len
        {
            let out = chunk.slice(self.offset..self.offset + len);
            self.advance(len);
            return out;
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let n = self.chunk().len().min(len - out.len());
            if n == 0 {
                break;
            }
            out.extend_from_slice(&self.chunk()[..n]);
            self.advance(n);
        }
        out.freeze()
    }
}

/// Splits a stream of DATA chunks into gRPC messages, without copying.
#[derive(Default)]
pub struct Framer {
    chunks: VecDeque<Bytes>,
    buffered: usize,
}

impl Framer {
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.buffered += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Bytes received that are not part of a complete message yet.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The next complete message, if all of it has arrived.
    pub fn next_message(&mut self) -> anyhow::Result<Option<Rope>> {
        if self.buffered < GRPC_HEADER {
            return Ok(None);
        }
        let mut header = [0u8; GRPC_HEADER];
        let mut filled = 0;
        for chunk in &self.chunks {
            let n = chunk.len().min(GRPC_HEADER - filled);
            header[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            if filled == GRPC_HEADER {
                break;
            }
        }
        if header[0] != 0 {
            anyhow::bail!("compressed gRPC message (none was negotiated)");
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if self.buffered < GRPC_HEADER + len {
            return Ok(None);
        }
        self.take(GRPC_HEADER);
        Ok(Some(self.take(len)))
    }

    fn take(&mut self, mut n: usize) -> Rope {
        self.buffered -= n;
        let mut rope = Rope {
            chunks: Vec::new(),
            len: n,
        };
        while n > 0 {
            let Some(mut chunk) = self.chunks.pop_front() else {
                break;
            };
            if chunk.len() > n {
                let rest = chunk.split_off(n);
                self.chunks.push_front(rest);
            }
            n -= chunk.len();
            rope.chunks.push(chunk);
        }
        rope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn messages_split_anywhere_come_out_whole() {
        let a: Vec<u8> = (0..100u8).collect();
        let b = b"hello".to_vec();
        let mut all = framed(&a);
        all.extend(framed(&b));
        all.extend(framed(&[]));
        for size in [1, 3, 7, all.len()] {
            let mut framer = Framer::default();
            let mut out = Vec::new();
            for chunk in all.chunks(size) {
                framer.push(Bytes::copy_from_slice(chunk));
                while let Some(m) = framer.next_message().unwrap() {
                    let mut c = m.cursor();
                    out.push(c.copy_to_bytes(m.len()).to_vec());
                }
            }
            assert_eq!(out, vec![a.clone(), b.clone(), vec![]]);
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn cursor_reads_across_chunks() {
        let mut framer = Framer::default();
        let body: Vec<u8> = (0..50u8).collect();
        for chunk in framed(&body).chunks(4) {
            framer.push(Bytes::copy_from_slice(chunk));
        }
        let rope = framer.next_message().unwrap().unwrap();
        assert_eq!(rope.len(), 50);
        assert_eq!(&rope.slice(10, 20)[..], &body[10..30]);
        assert_eq!(&rope.slice(0, 3)[..], &body[0..3]);
        let mut c = rope.cursor();
        c.advance(13);
        assert_eq!(c.position(&rope), 13);
        assert_eq!(c.get_u8(), 13);
        assert_eq!(&c.copy_to_bytes(36)[..], &body[14..50]);
        assert_eq!(c.remaining(), 0);
        let mut header = [0u8; 5];
        header[0] = 1;
        let mut compressed = Framer::default();
        compressed.push(Bytes::copy_from_slice(&header));
        assert!(compressed.next_message().is_err());
    }
}
