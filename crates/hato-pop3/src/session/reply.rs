//! Responses and errors: `+OK`, `-ERR` with the RFC 2449 §8 / RFC 3206 response
//! codes, and the client error count behind [`super::Config::max_errors`].

use super::{Session, Step};

/// RFC 2449 §8 / RFC 3206 extended response codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Code {
    Auth,
    SysTemp,
    SysPerm,
    InUse,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Auth => "AUTH",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
            Code::InUse => "IN-USE",
        }
    }
}

impl Session {
    pub(super) fn ok(&mut self, text: &str) {
        self.output.extend_from_slice(b"+OK");
        if !text.is_empty() {
            self.output.push(b' ');
            self.output.extend_from_slice(text.as_bytes());
        }
        self.output.extend_from_slice(b"\r\n");
    }

    fn write_err(&mut self, code: Option<Code>, text: &str) {
        self.output.extend_from_slice(b"-ERR ");
        if let Some(c) = code {
            self.output.push(b'[');
            self.output.extend_from_slice(c.as_str().as_bytes());
            self.output.extend_from_slice(b"] ");
        }
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// A `-ERR` caused by the server side (storage, lock): not a client error.
    pub(super) fn server_err(&mut self, code: Option<Code>, text: &str) {
        self.write_err(code, text);
    }

    /// A `-ERR` for a client error: counted against `max_errors`.
    pub(super) fn client_err(&mut self, code: Option<Code>, text: &str) {
        self.write_err(code, text);
        self.stats.errors = self.stats.errors.saturating_add(1);
        if !self.closing && self.stats.errors >= self.config.max_errors.max(1) {
            self.write_err(None, "Too many errors, closing connection");
            self.closing = true;
        }
    }

    /// [`Session::client_err`] without a code, as a step result.
    pub(super) fn err(&mut self, text: &str) -> Step {
        self.client_err(None, text);
        Step::Continue
    }
}
