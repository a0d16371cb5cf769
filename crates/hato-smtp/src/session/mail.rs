//! The envelope commands: MAIL FROM (RFC 5321 §4.1.1.2, RFC 1870, RFC 6152, RFC 6531,
//! RFC 4954 §5, RFC 3461 §4.3/§4.4, RFC 8689 §4.1) and RCPT TO (RFC 5321 §4.1.1.3,
//! RFC 3461 §4.1/§4.2), and the policy layer's answers to them.

use super::command::{self, Param, PathError};
use super::{Action, MailParams, Mode, Session, Step, Transaction};
use crate::address::Address;
use crate::dsn::{self, DsnRet, Notify, Orcpt, RcptDsn};
use crate::reply::Reply;

impl Session {
    /// MAIL FROM (RFC 5321 §4.1.1.2, RFC 1870, RFC 6152, RFC 6531, RFC 4954 §5,
    /// RFC 3461 §4.3/§4.4, RFC 8689 §4.1).
    pub(super) fn cmd_mail(&mut self, args: &str) -> Step {
        if let Some(r) = self.tls_required() {
            return self.simple(r);
        }
        if self.helo.is_none() {
            return self.simple(Reply::new(503, (5, 5, 1), "Send HELO/EHLO first"));
        }
        if self.config.mode == Mode::Submission && self.auth_user.is_none() {
            return self.simple(Reply::new(530, (5, 7, 0), "Authentication required"));
        }
        if self.txn.is_some() {
            return self.simple(Reply::new(503, (5, 5, 1), "Nested MAIL command"));
        }
        let (sender, params_given) =
            match self.path_arg(args, &MAIL_PATH, command::parse_reverse_path) {
                Ok(a) => a,
                Err(r) => return self.simple(r),
            };
        let mut params = MailParams::default();
        for p in keywords(&params_given) {
            let (key, value) = match p {
                Ok(p) => p,
                Err(r) => return self.simple(r),
            };
            match (key.as_str(), value) {
                ("SIZE", Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    let too_big = v.len() > 19
                        || v.parse::<u64>()
                            .map_or(true, |n| n > self.config.max_message_size as u64);
                    if too_big {
                        return self.simple(Reply::new(
                            552,
                            (5, 3, 4),
                            "Message size exceeds fixed maximum message size",
                        ));
                    }
                }
                ("SIZE", _) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "Invalid SIZE parameter"));
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => params.body_8bitmime = false,
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                    params.body_8bitmime = true
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("BINARYMIME") => {
                    return self.simple(Reply::new(
                        555,
                        (5, 5, 4),
                        "BODY=BINARYMIME not supported",
                    ));
                }
                ("BODY", _) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "Invalid BODY parameter"));
                }
                ("SMTPUTF8", None) => params.smtputf8 = true,
                ("SMTPUTF8", Some(_)) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "SMTPUTF8 takes no value"));
                }
                // RFC 4954 §5: accepted and ignored (we never trust a client's claim).
                ("AUTH", Some(_)) => {}
                ("AUTH", None) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "Invalid AUTH parameter"));
                }
                ("RET", v) => match dsn::value(v).and_then(DsnRet::parse) {
                    Ok(ret) => params.ret = Some(ret),
                    Err(e) => return self.simple(invalid_param(&key, e)),
                },
                ("ENVID", v) => match dsn::value(v).and_then(dsn::parse_envid) {
                    Ok(envid) => params.envid = Some(envid),
                    Err(e) => return self.simple(invalid_param(&key, e)),
                },
                ("REQUIRETLS", None) if self.tls.is_none() => {
                    return self.simple(Reply::new(
                        530,
                        (5, 7, 10),
                        "REQUIRETLS requires a TLS-protected session",
                    ));
                }
                ("REQUIRETLS", None) => params.requiretls = true,
                ("REQUIRETLS", Some(_)) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "REQUIRETLS takes no value"));
                }
                _ => {
                    return self.simple(Reply::new(
                        555,
                        (5, 5, 4),
                        format!("Unsupported parameter {key}"),
                    ));
                }
            }
        }
        if sender.as_ref().is_some_and(Address::is_utf8) && !params.smtputf8 {
            return self.simple(Reply::new(
                553,
                (5, 6, 7),
                "Non-ASCII address requires SMTPUTF8",
            ));
        }
        self.pending_mail = Some(params);
        Step::Action(Action::CheckSender { address: sender })
    }

    /// Answer to [`Action::CheckSender`]: `Ok` -> `250 2.1.0 Ok`, `Err(reply)` -> reply.
    pub fn sender_result(&mut self, r: Result<(), Reply>) {
        let Some(Action::CheckSender { address }) = self
            .pending
            .take_if(|p| matches!(p, Action::CheckSender { .. }))
        else {
            return;
        };
        let params = self.pending_mail.take().unwrap_or_default();
        match r {
            Ok(()) => {
                self.txn = Some(Transaction {
                    sender: address,
                    params,
                    recipients: Vec::new(),
                    rcpt_dsn: Vec::new(),
                    chunks: super::data::Chunks::new(self.config.bare_line_endings),
                    chunking: false,
                    rcpt_commands: 0,
                });
                self.reply(Reply::new(250, (2, 1, 0), "Ok"));
            }
            Err(reply) => self.reply(reply),
        }
    }

    /// RCPT TO (RFC 5321 §4.1.1.3, RFC 3461 §4.1/§4.2).
    pub(super) fn cmd_rcpt(&mut self, args: &str) -> Step {
        if let Some(r) = self.tls_required() {
            return self.simple(r);
        }
        let Some(txn) = &mut self.txn else {
            return self.simple(Reply::new(503, (5, 5, 1), "Need MAIL command"));
        };
        if txn.chunking {
            return self.simple(Reply::new(503, (5, 5, 1), "RCPT not allowed after BDAT"));
        }
        // Every RCPT counts, repeated or refused ones too: past the limit the answer is 452 and
        // an error, so a client looping on RCPT reaches the error limit and is disconnected.
        txn.rcpt_commands = txn.rcpt_commands.saturating_add(1);
        if txn.rcpt_commands > self.config.max_recipients.saturating_mul(2).max(100) {
            self.reply(Reply::new(452, (4, 5, 3), "Too many recipients"));
            self.count_error();
            return Step::Continue;
        }
        let smtputf8 = txn.params.smtputf8;
        let count = txn.recipients.len();
        let hostname = &self.config.hostname;
        let parse = |inner: &str| command::parse_forward_path(inner, hostname);
        let (address, params) = match self.path_arg(args, &RCPT_PATH, parse) {
            Ok(a) => a,
            Err(r) => return self.simple(r),
        };
        let mut dsn = RcptDsn::default();
        for p in keywords(&params) {
            let (key, value) = match p {
                Ok(p) => p,
                Err(r) => return self.simple(r),
            };
            let parsed = match key.as_str() {
                "NOTIFY" => dsn::value(value)
                    .and_then(Notify::parse)
                    .map(|n| dsn.notify = Some(n)),
                "ORCPT" => dsn::value(value)
                    .and_then(Orcpt::parse)
                    .map(|o| dsn.orcpt = Some(o)),
                _ => {
                    return self.simple(Reply::new(
                        555,
                        (5, 5, 4),
                        format!("Unsupported parameter {key}"),
                    ));
                }
            };
            if let Err(e) = parsed {
                return self.simple(invalid_param(&key, e));
            }
        }
        if address.is_utf8() && !smtputf8 {
            return self.simple(Reply::new(
                553,
                (5, 6, 7),
                "Non-ASCII address requires SMTPUTF8",
            ));
        }
        let norm = address.normalized();
        if self
            .txn
            .as_ref()
            .is_some_and(|t| t.recipients.iter().any(|r| r.normalized() == norm))
        {
            return self.simple(Reply::new(250, (2, 1, 5), "Ok"));
        }
        if count >= self.config.max_recipients {
            return self.simple(Reply::new(452, (4, 5, 3), "Too many recipients"));
        }
        self.pending_rcpt = Some(dsn);
        Step::Action(Action::CheckRecipient { address })
    }

    /// The argument of MAIL or RCPT: `<path> [params]`, the path parsed by `parse`.
    /// Parameters need EHLO (RFC 5321 §4.1.1.2/§4.1.1.3: they are service extensions).
    fn path_arg<'a, T, E: std::fmt::Display>(
        &self,
        args: &'a str,
        cmd: &PathCommand,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<(T, Vec<Param<'a>>), Reply> {
        let bad_path = |text: String| Reply::new(501, cmd.bad_path_status, text);
        let arg = command::parse_path_arg(args, cmd.prefix).map_err(|e| match e {
            PathError::Syntax => Reply::new(501, (5, 5, 4), cmd.syntax),
            PathError::Path => bad_path(cmd.bad_path.into()),
            PathError::Params => Reply::new(501, (5, 5, 4), "Invalid parameter syntax"),
        })?;
        let path = parse(arg.inner).map_err(|e| bad_path(format!("{}: {e}", cmd.bad_path)))?;
        if !self.esmtp && !arg.params.is_empty() {
            return Err(Reply::new(555, (5, 5, 4), cmd.params_need_ehlo));
        }
        Ok((path, arg.params))
    }

    /// Answer to [`Action::CheckRecipient`]: `Ok` -> `250 2.1.5 Ok`, `Err(reply)` -> reply.
    pub fn recipient_result(&mut self, r: Result<(), Reply>) {
        let Some(Action::CheckRecipient { address }) = self
            .pending
            .take_if(|p| matches!(p, Action::CheckRecipient { .. }))
        else {
            return;
        };
        let dsn = self.pending_rcpt.take().unwrap_or_default();
        match r {
            Ok(()) => {
                if let Some(txn) = &mut self.txn {
                    txn.recipients.push(address);
                    txn.rcpt_dsn.push(dsn);
                }
                self.reply(Reply::new(250, (2, 1, 5), "Ok"));
            }
            Err(reply) => self.reply(reply),
        }
    }
}

/// What MAIL and RCPT answer to a bad argument.
struct PathCommand {
    /// `FROM:` or `TO:`.
    prefix: &'static str,
    /// The `FROM:`/`TO:` is missing.
    syntax: &'static str,
    /// The path is malformed (followed by the reason where the address is).
    bad_path: &'static str,
    bad_path_status: (u8, u16, u16),
    params_need_ehlo: &'static str,
}

const MAIL_PATH: PathCommand = PathCommand {
    prefix: "FROM:",
    syntax: "Syntax: MAIL FROM:<address>",
    bad_path: "Bad sender address syntax",
    bad_path_status: (5, 1, 7),
    params_need_ehlo: "MAIL parameters require EHLO",
};

const RCPT_PATH: PathCommand = PathCommand {
    prefix: "TO:",
    syntax: "Syntax: RCPT TO:<address>",
    bad_path: "Bad destination mailbox address syntax",
    bad_path_status: (5, 1, 3),
    params_need_ehlo: "RCPT parameters require EHLO",
};

/// The parameters' keywords (upper-cased) with their values, in order; in place of a
/// keyword given a second time, `501 5.5.4 Duplicate parameter <KEY>` (RFC 5321
/// §4.1.1.11 does not allow it).
fn keywords<'p>(
    params: &'p [Param<'p>],
) -> impl Iterator<Item = Result<(String, Option<&'p str>), Reply>> + 'p {
    let mut seen: Vec<String> = Vec::new();
    params.iter().map(move |p| {
        let key = p.keyword.to_ascii_uppercase();
        if seen.contains(&key) {
            return Err(Reply::new(
                501,
                (5, 5, 4),
                format!("Duplicate parameter {key}"),
            ));
        }
        seen.push(key.clone());
        Ok((key, p.value))
    })
}

/// `501 5.5.4 Invalid <KEY> parameter: <why>` (RFC 3461 §4, RFC 5321 §4.1.1.11).
fn invalid_param(key: &str, why: dsn::DsnError) -> Reply {
    Reply::new(501, (5, 5, 4), format!("Invalid {key} parameter: {why}"))
}
