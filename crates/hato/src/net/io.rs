//! Reads and writes with timeouts, for the protocol drivers' loops.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::info;

use super::Shutdown;

/// What one wait for the client brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// This many bytes are at the start of the buffer.
    Data(usize),
    /// The client closed its side.
    Closed,
    /// Nothing came within the timeout (logged here).
    TimedOut,
    /// The server is stopping.
    Shutdown,
}

/// Waits for the client's next bytes, at most `timeout`, and for shutdown.
pub async fn read_input<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut [u8],
    timeout: Duration,
    shutdown: &mut Shutdown,
) -> std::io::Result<Input> {
    tokio::select! {
        r = tokio::time::timeout(timeout, io.read(buf)) => match r {
            Ok(Ok(0)) => Ok(Input::Closed),
            Ok(Ok(n)) => Ok(Input::Data(n)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                info!(timeout_s = timeout.as_secs(), "timeout");
                Ok(Input::TimedOut)
            }
        },
        _ = shutdown.changed() => Ok(Input::Shutdown),
    }
}

/// Writes bytes to the client; a client that stops reading is cut off after `timeout`.
pub async fn write_with_timeout<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(timeout, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    .context("timed out writing to the client")??;
    Ok(())
}
