//! `hexbroker healthcheck` (§3): asks the server on `HEXBROKER_LISTEN` for `/readyz` with one plain
//! HTTP/1.1 request over TCP, so a container's `HEALTHCHECK` needs no curl in the image.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Why the server is not healthy, in words for the one line the command prints.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// Nothing answered at the address (refused, unreachable, or silent past the timeout).
    #[error("no answer from {0}: {1}")]
    Unreachable(SocketAddr, std::io::Error),
    /// Something answered, but not with a 200 from `/readyz`.
    #[error("{0} answered /readyz with {1}")]
    NotReady(SocketAddr, String),
}

/// The address to ask: the listen address, with an unspecified IP (`0.0.0.0`, `::`) replaced by
/// loopback of the same family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// `Ok` when the server at `listen` answers `GET /readyz` with 200 within `timeout` in all.
pub fn check(listen: SocketAddr, timeout: Duration) -> Result<(), Unhealthy> {
    let addr = target(listen);
    let deadline = Instant::now() + timeout;
    let unreachable = |e| Unhealthy::Unreachable(addr, e);
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::TimedOut))
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    stream.set_write_timeout(Some(left().map_err(unreachable)?)).map_err(unreachable)?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: hexbroker-healthcheck\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(unreachable)?;

    // Only the status line matters; read until it is complete.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream.set_read_timeout(Some(left().map_err(unreachable)?)).map_err(unreachable)?;
        match stream.read(&mut buf).map_err(unreachable)? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or_default().trim();
    let mut words = status_line.split(' ');
    match (words.next(), words.next()) {
        (Some(version), Some("200")) if version.starts_with("HTTP/1.") => Ok(()),
        _ if status_line.is_empty() => Err(Unhealthy::NotReady(addr, "no status line".into())),
        _ => {
            Err(Unhealthy::NotReady(addr, format!("`{}`", status_line.chars().take(80).collect::<String>())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn an_unspecified_listen_address_is_asked_on_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:8080", "[::1]:8080"),
            ("10.0.0.5:81", "10.0.0.5:81"),
            ("127.0.0.1:9", "127.0.0.1:9"),
        ];
        for (listen, asked) in cases {
            assert_eq!(target(listen.parse().unwrap()).to_string(), asked, "{listen}");
        }
    }
}
