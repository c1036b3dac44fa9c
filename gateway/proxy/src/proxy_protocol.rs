//! The PROXY protocol header (HAProxy's v1 text and v2 binary, by the `ppp` crate) that a
//! trusted load balancer puts before a connection's first byte on a `proxy_protocol` listener.

use pingora_core::protocols::Stream;

/// The longest PROXY header read (v2 may carry TLVs; a v1 line is at most 107 bytes).
const MAX_PROXY_HEADER: usize = 4096;

/// Reads the PROXY protocol header (v1 or v2) that starts the connection: the client it
/// names (none for `UNKNOWN`, `LOCAL` or a Unix socket) and the bytes read past it.
pub(crate) async fn read_header(stream: &mut Stream) -> Result<(Option<std::net::SocketAddr>, Vec<u8>), String> {
    use ppp::v2::Command;
    use ppp::{v1, v2, HeaderResult, PartialResult};
    use std::net::SocketAddr;
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before a PROXY header".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let parsed = HeaderResult::parse(&buf);
        // A v1 line is whole at its CRLF, whatever the parser thinks (it calls a missing
        // field "incomplete" even then).
        let v1_line_done = buf.starts_with(b"PROXY") && buf.windows(2).any(|w| w == b"\r\n");
        if parsed.is_incomplete() && !v1_line_done {
            if buf.len() > MAX_PROXY_HEADER {
                return Err("PROXY header too long".into());
            }
            continue;
        }
        let (client, len) = match parsed {
            HeaderResult::V1(Ok(h)) => {
                let client = match h.addresses {
                    v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                    v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                    v1::Addresses::Unknown => None,
                };
                (client, h.header.len())
            }
            HeaderResult::V2(Ok(h)) => {
                let client = match (h.command, &h.addresses) {
                    (Command::Proxy, v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (Command::Proxy, v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    _ => None,
                };
                (client, h.len())
            }
            HeaderResult::V1(Err(e)) => return Err(format!("bad PROXY v1 header: {e}")),
            HeaderResult::V2(Err(e)) => return Err(format!("bad PROXY v2 header: {e}")),
        };
        return Ok((client, buf.split_off(len.min(buf.len()))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn proxy_header_of(bytes: &'static [u8]) -> Result<(Option<std::net::SocketAddr>, Vec<u8>), String> {
        let (server, mut client) = tokio::io::duplex(4096);
        client.write_all(bytes).await.expect("write");
        drop(client);
        let mut s: Stream = Box::new(server);
        read_header(&mut s).await
    }

    #[tokio::test]
    async fn proxy_headers_name_the_client_and_keep_what_follows() {
        let (client, rest) =
            proxy_header_of(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\n").await.expect("v1");
        assert_eq!(client, Some("198.51.100.7:40000".parse().expect("addr")));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (client, rest) = proxy_header_of(b"PROXY UNKNOWN\r\nX").await.expect("unknown");
        assert_eq!((client, rest.as_slice()), (None, &b"X"[..]));
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
        v2.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        v2.extend_from_slice(&[0; 15]);
        v2.push(1);
        v2.extend_from_slice(&[0x1f, 0x90, 0, 80]);
        v2.extend_from_slice(b"rest");
        let (client, rest) = proxy_header_of(v2.leak()).await.expect("v2 IPv6");
        assert_eq!(client, Some("[2001:db8::9]:8080".parse().expect("addr")));
        assert_eq!(rest, b"rest");
    }

    #[tokio::test]
    async fn bad_or_missing_proxy_headers_are_refused_at_once() {
        for bad in [
            &b"PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"PROXY TCP4 198.51.100.7",
        ] {
            assert!(proxy_header_of(bad).await.is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
