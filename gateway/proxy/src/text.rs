//! Small allocation-free formatting for the request path.

/// Formats an address without `fmt` machinery (IPv4, the common case) into `buf`.
pub fn fmt_ip(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write;
    let len = match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let o = *octet;
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            n
        }
        std::net::IpAddr::V6(v6) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{v6}");
            cur.position() as usize
        }
    };
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

/// Three-digit status without allocating.
pub fn fmt_status(buf: &mut [u8; 3], status: u16) -> &str {
    let s = status.min(999);
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_addresses() {
        let mut buf = [0u8; 48];
        for ip in ["127.0.0.1", "10.0.100.255", "0.0.0.0", "::1", "2001:db8::8a2e:370:7334"] {
            assert_eq!(super::fmt_ip(ip.parse().unwrap(), &mut buf), ip);
        }
        let mut code = [0u8; 3];
        assert_eq!(super::fmt_status(&mut code, 404), "404");
        assert_eq!(super::fmt_status(&mut code, 0), "000");
    }
}
