//! A minimal SMTP client: just what the load generator needs, with every reply checked.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Longest reply line accepted (RFC 5321 allows 512 octets; be generous).
const MAX_LINE: usize = 64 * 1024;
/// Most lines accepted in one multi-line reply.
const MAX_REPLY_LINES: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// Plain text SMTP.
    None,
    /// Plain text connect, then STARTTLS (RFC 3207) before anything else.
    Starttls,
    /// TLS from the first byte (RFC 8314, usually port 465).
    Implicit,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::None => "none",
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
        })
    }
}

/// Where in the session something went wrong; used to label failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Tls,
    Greeting,
    Ehlo,
    Starttls,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// The message content and the final `.`
    EndOfData,
    Rset,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Tls => "TLS handshake",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Starttls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::EndOfData => "end of DATA",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        })
    }
}

/// One SMTP reply: the code and the text of each line (without code and separator).
#[derive(Clone, Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The RFC 3463 enhanced status code at the start of the last line, if any.
    fn enhanced(&self) -> Option<&str> {
        let first = self.lines.last()?.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let ok = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

#[derive(Debug)]
pub enum SmtpError {
    Io { stage: Stage, err: io::Error },
    Timeout { stage: Stage },
    Closed { stage: Stage },
    Protocol { stage: Stage, msg: String },
    Reply { stage: Stage, reply: Reply },
}

impl SmtpError {
    /// A short key that groups identical failures: stage, reply code, enhanced code.
    pub fn label(&self) -> String {
        match self {
            SmtpError::Reply { stage, reply } => match reply.enhanced() {
                Some(enh) => format!("{stage} {} {enh}", reply.code),
                None => format!("{stage} {}", reply.code),
            },
            SmtpError::Io { stage, err } => format!("{stage}: {err}"),
            SmtpError::Timeout { stage } => format!("{stage}: timeout"),
            SmtpError::Closed { stage } => format!("{stage}: connection closed by server"),
            SmtpError::Protocol { stage, msg } => format!("{stage}: {msg}"),
        }
    }

    /// Whether the connection can still be used (after an RSET).
    pub fn connection_usable(&self) -> bool {
        matches!(self, SmtpError::Reply { reply, .. } if reply.code != 421)
    }
}

impl fmt::Display for SmtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpError::Reply { stage, reply } => write!(f, "{stage}: server replied {reply}"),
            other => f.write_str(&other.label()),
        }
    }
}

impl std::error::Error for SmtpError {}

/// Extensions from the EHLO reply that matter here.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    pub auth_plain: bool,
    /// SIZE limit; `Some(0)` means "advertised without a limit".
    pub size: Option<u64>,
    pub keywords: Vec<String>,
}

impl Capabilities {
    fn parse(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "AUTH" => {
                    caps.auth_plain |= words.any(|m| m.eq_ignore_ascii_case("PLAIN"));
                }
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
            caps.keywords.push(keyword);
        }
        caps
    }
}

/// Everything needed to open a session; shared by all workers.
pub struct SessionParams {
    pub server: String,
    pub tls: TlsMode,
    pub connector: Option<TlsConnector>,
    pub server_name: Option<ServerName<'static>>,
    pub ehlo_name: String,
    /// Pre-encoded AUTH PLAIN initial response.
    pub auth_plain: Option<String>,
    pub timeout: Duration,
    pub allow_pipelining: bool,
}

impl SessionParams {
    pub fn auth_plain_response(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An SMTP session that is ready for MAIL FROM.
pub struct Session {
    stream: Stream,
    rbuf: Vec<u8>,
    rpos: usize,
    timeout: Duration,
    pub caps: Capabilities,
    pipelining: bool,
}

impl Session {
    /// Connects and runs greeting, EHLO, STARTTLS + EHLO and AUTH as configured.
    pub async fn open(p: &SessionParams) -> Result<Session, SmtpError> {
        let tcp = timeout(p.timeout, TcpStream::connect(&p.server))
            .await
            .map_err(|_| SmtpError::Timeout {
                stage: Stage::Connect,
            })?
            .map_err(|err| SmtpError::Io {
                stage: Stage::Connect,
                err,
            })?;
        tcp.set_nodelay(true).map_err(|err| SmtpError::Io {
            stage: Stage::Connect,
            err,
        })?;
        let mut s = Session {
            stream: Stream::Plain(tcp),
            rbuf: Vec::with_capacity(4096),
            rpos: 0,
            timeout: p.timeout,
            caps: Capabilities::default(),
            pipelining: false,
        };
        if p.tls == TlsMode::Implicit {
            s = s.start_tls(p).await?;
        }
        s.expect(Stage::Greeting, 220).await?;
        s.ehlo(p).await?;
        if p.tls == TlsMode::Starttls {
            if !s.caps.starttls {
                return Err(SmtpError::Protocol {
                    stage: Stage::Ehlo,
                    msg: "server does not advertise STARTTLS".into(),
                });
            }
            s.command(Stage::Starttls, b"STARTTLS\r\n", 220).await?;
            s = s.start_tls(p).await?;
            s.ehlo(p).await?;
        }
        if let Some(resp) = &p.auth_plain {
            if !s.caps.auth_plain {
                return Err(SmtpError::Protocol {
                    stage: Stage::Ehlo,
                    msg: "server does not advertise AUTH PLAIN".into(),
                });
            }
            let cmd = format!("AUTH PLAIN {resp}\r\n");
            s.command(Stage::Auth, cmd.as_bytes(), 235).await?;
        }
        s.pipelining = p.allow_pipelining && s.caps.pipelining;
        Ok(s)
    }

    pub fn pipelining(&self) -> bool {
        self.pipelining
    }

    async fn ehlo(&mut self, p: &SessionParams) -> Result<(), SmtpError> {
        let cmd = format!("EHLO {}\r\n", p.ehlo_name);
        let reply = self.command(Stage::Ehlo, cmd.as_bytes(), 250).await?;
        self.caps = Capabilities::parse(&reply);
        Ok(())
    }

    async fn start_tls(self, p: &SessionParams) -> Result<Session, SmtpError> {
        let stage = Stage::Tls;
        if self.rpos < self.rbuf.len() {
            // Anything buffered now was sent before the handshake: RFC 3207 injection.
            return Err(SmtpError::Protocol {
                stage,
                msg: "server sent data before the TLS handshake".into(),
            });
        }
        let (Some(connector), Some(name)) = (&p.connector, &p.server_name) else {
            return Err(SmtpError::Protocol {
                stage,
                msg: "TLS is not configured".into(),
            });
        };
        let Stream::Plain(tcp) = self.stream else {
            return Err(SmtpError::Protocol {
                stage,
                msg: "TLS is already active".into(),
            });
        };
        let tls = timeout(p.timeout, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| SmtpError::Timeout { stage })?
            .map_err(|err| SmtpError::Io { stage, err })?;
        Ok(Session {
            stream: Stream::Tls(Box::new(tls)),
            rbuf: Vec::with_capacity(4096),
            rpos: 0,
            timeout: self.timeout,
            caps: self.caps,
            pipelining: self.pipelining,
        })
    }

    /// Runs one mail transaction; returns the time from sending MAIL FROM to the
    /// final reply after the message content.
    ///
    /// `data` is the dot-stuffed content including the terminating `.\r\n`. On an
    /// `Err` that leaves the connection usable, the caller should RSET.
    pub async fn transaction(
        &mut self,
        from: &str,
        to: &[String],
        data: &[u8],
    ) -> Result<Duration, SmtpError> {
        let size = match self.caps.size {
            Some(_) => format!(" SIZE={}", data.len()),
            None => String::new(),
        };
        let mail = format!("MAIL FROM:<{from}>{size}\r\n");
        let start = Instant::now();
        // First failure wins; later replies must still be read to stay in sync.
        let mut first_err: Option<SmtpError> = None;
        let data_reply = if self.pipelining {
            // RFC 2920: MAIL, RCPTs and DATA go in one write, replies come in order.
            let mut batch = mail.into_bytes();
            for rcpt in to {
                batch.extend_from_slice(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.write_all(Stage::Mail, &batch).await?;
            let reply = self.read_reply(Stage::Mail).await?;
            note(&mut first_err, Stage::Mail, reply);
            let mut accepted = 0;
            for _ in to {
                let reply = self.read_reply(Stage::Rcpt).await?;
                accepted += usize::from(reply.is_positive());
                note(&mut first_err, Stage::Rcpt, reply);
            }
            let reply = self.read_reply(Stage::Data).await?;
            if reply.code == 354 && accepted == 0 {
                // A broken server: nowhere to deliver to, yet it wants the content.
                return Err(SmtpError::Protocol {
                    stage: Stage::Data,
                    msg: "354 after every recipient was refused".into(),
                });
            }
            reply
        } else {
            let reply = self.round_trip(Stage::Mail, mail.as_bytes()).await?;
            if !reply.is_positive() {
                return Err(SmtpError::Reply {
                    stage: Stage::Mail,
                    reply,
                });
            }
            let mut accepted = 0;
            for rcpt in to {
                let cmd = format!("RCPT TO:<{rcpt}>\r\n");
                let reply = self.round_trip(Stage::Rcpt, cmd.as_bytes()).await?;
                accepted += usize::from(reply.is_positive());
                note(&mut first_err, Stage::Rcpt, reply);
            }
            if accepted == 0 {
                return Err(first_err.expect("a refused recipient was noted"));
            }
            self.round_trip(Stage::Data, b"DATA\r\n").await?
        };
        if data_reply.code != 354 {
            return Err(first_err.unwrap_or(SmtpError::Reply {
                stage: Stage::Data,
                reply: data_reply,
            }));
        }
        self.write_all(Stage::EndOfData, data).await?;
        let reply = self.read_reply(Stage::EndOfData).await?;
        let elapsed = start.elapsed();
        note(&mut first_err, Stage::EndOfData, reply);
        match first_err {
            Some(e) => Err(e),
            None => Ok(elapsed),
        }
    }

    /// Checks that the server accepts the envelope (MAIL FROM and every RCPT TO), then
    /// RSETs, so that nothing is delivered.
    pub async fn probe_envelope(&mut self, from: &str, to: &[String]) -> Result<(), SmtpError> {
        let mail = format!("MAIL FROM:<{from}>\r\n");
        let reply = self.round_trip(Stage::Mail, mail.as_bytes()).await?;
        if reply.code != 250 {
            return Err(SmtpError::Reply {
                stage: Stage::Mail,
                reply,
            });
        }
        for rcpt in to {
            let cmd = format!("RCPT TO:<{rcpt}>\r\n");
            let reply = self.round_trip(Stage::Rcpt, cmd.as_bytes()).await?;
            if !reply.is_positive() {
                return Err(SmtpError::Reply {
                    stage: Stage::Rcpt,
                    reply,
                });
            }
        }
        self.rset().await
    }

    pub async fn rset(&mut self) -> Result<(), SmtpError> {
        self.command(Stage::Rset, b"RSET\r\n", 250).await.map(drop)
    }

    /// Sends QUIT, checks for 221 and closes the connection (with close_notify on TLS).
    pub async fn quit(mut self) -> Result<(), SmtpError> {
        let result = self.command(Stage::Quit, b"QUIT\r\n", 221).await.map(drop);
        let t = self.timeout;
        let _ = match &mut self.stream {
            Stream::Plain(s) => timeout(t, s.shutdown()).await,
            Stream::Tls(s) => timeout(t, s.shutdown()).await,
        };
        result
    }

    /// Sends a command and requires exactly `code` in reply.
    async fn command(&mut self, stage: Stage, cmd: &[u8], code: u16) -> Result<Reply, SmtpError> {
        let reply = self.round_trip(stage, cmd).await?;
        if reply.code != code {
            return Err(SmtpError::Reply { stage, reply });
        }
        Ok(reply)
    }

    async fn round_trip(&mut self, stage: Stage, cmd: &[u8]) -> Result<Reply, SmtpError> {
        self.write_all(stage, cmd).await?;
        self.read_reply(stage).await
    }

    /// Reads a reply and requires exactly `code`.
    async fn expect(&mut self, stage: Stage, code: u16) -> Result<Reply, SmtpError> {
        let reply = self.read_reply(stage).await?;
        if reply.code != code {
            return Err(SmtpError::Reply { stage, reply });
        }
        Ok(reply)
    }

    async fn write_all(&mut self, stage: Stage, data: &[u8]) -> Result<(), SmtpError> {
        let t = self.timeout;
        let io = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(data).await,
                Stream::Tls(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
            }
        };
        timeout(t, io)
            .await
            .map_err(|_| SmtpError::Timeout { stage })?
            .map_err(|err| SmtpError::Io { stage, err })
    }

    async fn read_reply(&mut self, stage: Stage) -> Result<Reply, SmtpError> {
        let t = self.timeout;
        timeout(t, self.read_reply_inner(stage))
            .await
            .map_err(|_| SmtpError::Timeout { stage })?
    }

    async fn read_reply_inner(&mut self, stage: Stage) -> Result<Reply, SmtpError> {
        let bad = |msg: String| SmtpError::Protocol { stage, msg };
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(stage).await?;
            let b = line.as_bytes();
            if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || b[0] == b'0' {
                return Err(bad(format!("malformed reply line {:?}", truncate(&line))));
            }
            let this: u16 = line[..3]
                .parse()
                .map_err(|_| bad("bad reply code".into()))?;
            if *code.get_or_insert(this) != this {
                return Err(bad("reply code changed within a multi-line reply".into()));
            }
            let last = match b.get(3) {
                None | Some(b' ') => true,
                Some(b'-') => false,
                Some(_) => return Err(bad(format!("malformed reply line {:?}", truncate(&line)))),
            };
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if last {
                return Ok(Reply { code: this, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(bad("reply has too many lines".into()));
            }
        }
    }

    async fn read_line(&mut self, stage: Stage) -> Result<String, SmtpError> {
        loop {
            if let Some(i) = self.rbuf[self.rpos..].iter().position(|&b| b == b'\n') {
                let mut line = &self.rbuf[self.rpos..self.rpos + i];
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                let line = String::from_utf8_lossy(line).into_owned();
                self.rpos += i + 1;
                if self.rpos == self.rbuf.len() {
                    self.rbuf.clear();
                    self.rpos = 0;
                }
                return Ok(line);
            }
            if self.rbuf.len() - self.rpos > MAX_LINE {
                return Err(SmtpError::Protocol {
                    stage,
                    msg: "reply line too long".into(),
                });
            }
            if self.rpos > 0 {
                self.rbuf.drain(..self.rpos);
                self.rpos = 0;
            }
            let old = self.rbuf.len();
            self.rbuf.resize(old + 8192, 0);
            let n = match &mut self.stream {
                Stream::Plain(s) => s.read(&mut self.rbuf[old..]).await,
                Stream::Tls(s) => s.read(&mut self.rbuf[old..]).await,
            };
            self.rbuf.truncate(old + *n.as_ref().unwrap_or(&0));
            match n {
                Ok(0) => return Err(SmtpError::Closed { stage }),
                Ok(_) => {}
                Err(err) => return Err(SmtpError::Io { stage, err }),
            }
        }
    }
}

/// Records a negative reply unless an earlier failure is already recorded.
fn note(first_err: &mut Option<SmtpError>, stage: Stage, reply: Reply) {
    if !reply.is_positive() && first_err.is_none() {
        *first_err = Some(SmtpError::Reply { stage, reply });
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes() {
        let r = |code, text: &str| Reply {
            code,
            lines: vec![text.into()],
        };
        assert_eq!(r(550, "5.7.1 no").enhanced(), Some("5.7.1"));
        assert_eq!(r(250, "2.0.0 Ok: queued").enhanced(), Some("2.0.0"));
        assert_eq!(r(250, "Ok").enhanced(), None);
        assert_eq!(r(220, "1.2.3.4 host").enhanced(), None);
        let e = SmtpError::Reply {
            stage: Stage::Rcpt,
            reply: r(550, "5.1.1 unknown user"),
        };
        assert_eq!(e.label(), "RCPT 550 5.1.1");
    }

    #[test]
    fn capabilities() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "mx.example Hello".into(),
                "PIPELINING".into(),
                "SIZE 10240000".into(),
                "auth LOGIN plain".into(),
                "STARTTLS".into(),
            ],
        };
        let c = Capabilities::parse(&reply);
        assert!(c.pipelining && c.starttls && c.auth_plain);
        assert_eq!(c.size, Some(10_240_000));
    }
}
