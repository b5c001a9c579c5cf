//! The agent's side of a port connection: it connects to the port on the sandbox's own loopback
//! (it lives in the sandbox's network namespace) and then relays bytes both ways between that
//! connection and the host's unix socket. The sandbox's network stays as closed as it was: no
//! interface, route or firewall rule changes, and only the host can open such a relay.

use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use super::protocol::{Response, write_frame};

/// How long connecting to a port inside the sandbox may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `port` (IPv4 loopback first, then IPv6), answers `Connected` or `Error`, and
/// relays until either side closes.
pub async fn relay(mut stream: UnixStream, port: u16) {
    let connected = match connect(port).await {
        Ok(tcp) => tcp,
        Err(e) => {
            let message = format!("nothing answers on port {port} in the sandbox: {e}");
            let _ = write_frame(&mut stream, &Response::Error { message }).await;
            return;
        }
    };
    let mut tcp = connected;
    if write_frame(&mut stream, &Response::Connected)
        .await
        .is_err()
    {
        return;
    }
    let _ = tcp.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
}

async fn connect(port: u16) -> std::io::Result<TcpStream> {
    let v4 = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await;
    match v4 {
        Ok(Ok(tcp)) => Ok(tcp),
        first => {
            let v6 = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("::1", port))).await;
            match v6 {
                Ok(Ok(tcp)) => Ok(tcp),
                _ => match first {
                    Ok(Err(e)) => Err(e),
                    _ => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )),
                },
            }
        }
    }
}
