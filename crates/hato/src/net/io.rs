//! Reads and writes with timeouts, for the protocol drivers' loops.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::info;

use super::{ClientStream, PRESSURE_TIMEOUT, Shutdown};

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

/// Waits for the client's next bytes, at most `timeout`, and for shutdown. A client that has
/// not logged in is looked at again every [`PRESSURE_TIMEOUT`]: once its listener is under
/// pressure, that is all the time it gets.
pub async fn read_input(
    io: &mut ClientStream,
    buf: &mut [u8],
    timeout: Duration,
    logged_in: bool,
    shutdown: &mut Shutdown,
) -> std::io::Result<Input> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if logged_in {
            left
        } else {
            left.min(PRESSURE_TIMEOUT)
        };
        tokio::select! {
            r = tokio::time::timeout(wait, io.read(buf)) => match r {
                Ok(Ok(0)) => return Ok(Input::Closed),
                Ok(Ok(n)) => return Ok(Input::Data(n)),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    let pressure = !logged_in && io.under_pressure();
                    if !pressure && Instant::now() < deadline {
                        continue;
                    }
                    info!(timeout_s = timeout.as_secs(), pressure, "timeout");
                    return Ok(Input::TimedOut);
                }
            },
            _ = shutdown.changed() => return Ok(Input::Shutdown),
        }
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
