//! sd_notify(3) for `Type=notify`: a datagram to `$NOTIFY_SOCKET`. Written
//! out here because it is a dozen lines; outside systemd it does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends a state string such as `READY=1` or `STOPPING=1`.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        // A leading '@' names a socket in Linux's abstract namespace.
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(&path)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}
