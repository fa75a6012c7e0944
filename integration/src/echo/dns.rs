//! A tiny DNS responder standing in for the base `coredns` Deployment: every A question is
//! answered with 127.0.0.1, anything else with an empty NOERROR answer. UDPRoute's
//! conformance test accepts any DNS answer, so this is all it needs.

use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A running DNS responder; stops when dropped.
pub struct DnsHandle {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DnsHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the responder on `bind`.
pub async fn spawn_dns(bind: SocketAddr) -> std::io::Result<DnsHandle> {
    let socket = UdpSocket::bind(bind).await?;
    let addr = socket.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            if let Some(answer) = answer(&buffer[..n]) {
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    });
    Ok(DnsHandle { addr, task })
}

/// The response to one query, or `None` for something that is not a one-question query.
pub fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let question_end = end + 5;
    let question = query.get(12..question_end)?;
    let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let is_a = qtype == 1;
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&query[0..2]);
    // QR=1, opcode 0, RD copied; RA=1, RCODE=0.
    out.push(0x80 | (query[2] & 0x01));
    out.push(0x80);
    out.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if is_a {
        // Name: pointer to the question's name at offset 12; A, IN, TTL 30, 127.0.0.1.
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// A query for `name`'s A record with id `id`.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    // RD=1, one question.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_questions() {
        let q = query(0xBEEF, "foo.bar.com.");
        let a = answer(&q).unwrap();
        assert_eq!(&a[0..2], &[0xBE, 0xEF]);
        assert_eq!(a[2] & 0x80, 0x80, "QR bit");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 1]);
        assert_eq!(answer(&a), None, "responses are not answered");
        assert_eq!(answer(&q[..5]), None);
    }
}
