//! FETCH (RFC 9051 §6.4.5): the macros, the attributes, `section` and `partial`,
//! RFC 3516 BINARY, RFC 7162 CHANGEDSINCE and VANISHED.

use super::primitives::valid_field_name;
use super::{Parser, Result};
use crate::command::*;

impl Parser<'_, '_> {
    pub(super) fn fetch(&mut self, uid: bool) -> Result<CommandBody> {
        let set = self.arg(Self::sequence_set)?;
        self.sp()?;
        let items = if self.peek() == Some(b'(') {
            self.paren_list(1, Self::fetch_attr)?
        } else if self.keyword("ALL") {
            vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
            ]
        } else if self.keyword("FAST") {
            vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
            ]
        } else if self.keyword("FULL") {
            vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
                FetchAttr::Body,
            ]
        } else {
            vec![self.fetch_attr()?]
        };
        let mut changed_since = None;
        let mut vanished = false;
        if !self.eof() {
            self.sp()?;
            self.paren_list(1, |p| {
                match p.word()?.as_str() {
                    "CHANGEDSINCE" => {
                        p.sp()?;
                        changed_since = Some(p.modseq()?);
                    }
                    "VANISHED" => vanished = true,
                    _ => return Err(p.syntax("unknown FETCH modifier")),
                }
                Ok(())
            })?;
        }
        self.end()?;
        if vanished && (!uid || changed_since.is_none()) {
            return Err(self.syntax("VANISHED needs UID FETCH with CHANGEDSINCE"));
        }
        Ok(CommandBody::Fetch(FetchCommand {
            uid,
            set,
            items,
            changed_since,
            vanished,
        }))
    }

    fn fetch_attr(&mut self) -> Result<FetchAttr> {
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        Ok(match name.as_str() {
            "ENVELOPE" => FetchAttr::Envelope,
            "FLAGS" => FetchAttr::Flags,
            "INTERNALDATE" => FetchAttr::InternalDate,
            "RFC822" => FetchAttr::Rfc822,
            "RFC822.HEADER" => FetchAttr::Rfc822Header,
            "RFC822.SIZE" => FetchAttr::Rfc822Size,
            "RFC822.TEXT" => FetchAttr::Rfc822Text,
            "BODYSTRUCTURE" => FetchAttr::BodyStructure,
            "UID" => FetchAttr::Uid,
            "MODSEQ" => FetchAttr::ModSeq,
            "BODY" if self.peek() != Some(b'[') => FetchAttr::Body,
            "BODY" | "BODY.PEEK" => {
                let section = self.section()?;
                let partial = self.partial()?;
                FetchAttr::BodySection {
                    peek: name == "BODY.PEEK",
                    section,
                    partial,
                }
            }
            "BINARY" | "BINARY.PEEK" => {
                let part = self.section_binary()?;
                let partial = self.partial()?;
                FetchAttr::Binary {
                    peek: name == "BINARY.PEEK",
                    part,
                    partial,
                }
            }
            "BINARY.SIZE" => FetchAttr::BinarySize {
                part: self.section_binary()?,
            },
            _ => return Err(self.syntax("unknown FETCH item")),
        })
    }

    /// `section-part = nz-number *("." nz-number)`; stops before a `.` not followed by a digit.
    fn section_part(&mut self) -> Result<Vec<u32>> {
        let mut part = vec![self.nz_number()?];
        while self.peek() == Some(b'.')
            && self.buf.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            part.push(self.nz_number()?);
        }
        Ok(part)
    }

    /// `section = "[" [section-spec] "]"`.
    pub(super) fn section(&mut self) -> Result<Section> {
        self.byte(b'[', "expected '['")?;
        let mut section = Section::default();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(section);
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            section.part = self.section_part()?;
            if self.peek() == Some(b'.') {
                self.pos += 1;
            } else {
                self.byte(b']', "expected ']'")?;
                return Ok(section);
            }
        }
        let w = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
        let w = String::from_utf8_lossy(w).to_ascii_uppercase();
        section.text = Some(match w.as_str() {
            "HEADER" => SectionText::Header,
            "TEXT" => SectionText::Text,
            "MIME" if !section.part.is_empty() => SectionText::Mime,
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                self.sp()?;
                let fields = self.paren_list(1, |p| {
                    let name = p.astring_utf8()?;
                    if valid_field_name(&name) {
                        Ok(name)
                    } else {
                        Err(p.syntax("invalid header field name"))
                    }
                })?;
                SectionText::HeaderFields {
                    not: w.ends_with(".NOT"),
                    fields,
                }
            }
            _ => return Err(self.syntax("invalid section")),
        });
        self.byte(b']', "expected ']'")?;
        Ok(section)
    }

    /// `section-binary = "[" [section-part] "]"`.
    fn section_binary(&mut self) -> Result<Vec<u32>> {
        self.byte(b'[', "expected '['")?;
        let part = if self.peek() == Some(b']') {
            Vec::new()
        } else {
            self.section_part()?
        };
        self.byte(b']', "expected ']'")?;
        Ok(part)
    }

    /// `partial = "<" number "." nz-number ">"`, optional.
    fn partial(&mut self) -> Result<Option<Partial>> {
        if self.peek() != Some(b'<') {
            return Ok(None);
        }
        self.pos += 1;
        let offset = self.number()?;
        self.byte(b'.', "expected '.'")?;
        let length = self.nz_number()?;
        self.byte(b'>', "expected '>'")?;
        Ok(Some(Partial { offset, length }))
    }
}
