//! SEARCH (RFC 9051 §6.4.4): RFC 4731 ESEARCH `RETURN`, the charset rule, and the
//! search keys with RFC 7162 MODSEQ and RFC 5032 OLDER/YOUNGER. Nesting (`NOT`, `OR`,
//! parentheses) is bounded by [`super::ParseOptions::max_depth`]. RFC 5256 SORT and THREAD
//! (sort criteria or algorithm, a mandatory charset, then search keys), RFC 5957
//! DISPLAYFROM/DISPLAYTO.

use super::primitives::valid_field_name;
use super::{ParseErrorKind, Parser, Result};
use crate::command::*;
use crate::datetime::Date;
use crate::flag::Flag;

impl Parser<'_, '_> {
    pub(super) fn search(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let mut returns = None;
        let mut charset = None;
        if self.keyword("RETURN") {
            returns = Some(self.search_returns(true)?);
        }
        if self.keyword("CHARSET") {
            self.sp()?;
            charset = Some(self.charset()?);
            self.sp()?;
        }
        let criteria = self.search_keys()?;
        Ok(CommandBody::Search(SearchCommand {
            uid,
            returns,
            charset,
            criteria,
        }))
    }

    /// After `RETURN`: ` (option ...) `, the RFC 4731 return options (SAVE, RFC 5182, only
    /// when `save`: ESORT takes MIN, MAX, ALL and COUNT), and the space after the list.
    fn search_returns(&mut self, save: bool) -> Result<Vec<SearchReturn>> {
        self.sp()?;
        let r = self.paren_list(0, |p| {
            let w = p.word()?;
            Ok(match w.as_str() {
                "MIN" => SearchReturn::Min,
                "MAX" => SearchReturn::Max,
                "ALL" => SearchReturn::All,
                "COUNT" => SearchReturn::Count,
                "SAVE" if save => SearchReturn::Save,
                _ => return Err(p.syntax("unknown SEARCH return option")),
            })
        })?;
        self.sp()?;
        Ok(r)
    }

    /// A search charset: `UTF-8` or `US-ASCII`, else [`ParseErrorKind::BadCharset`].
    fn charset(&mut self) -> Result<String> {
        let cs = match self.peek() {
            Some(b'"') => self.quoted()?,
            _ => self.atom()?.to_vec(),
        };
        let cs = String::from_utf8_lossy(&cs).into_owned();
        if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
            return Err(self.error(ParseErrorKind::BadCharset, "unsupported charset"));
        }
        Ok(cs)
    }

    /// One or more search keys up to the end of the command.
    fn search_keys(&mut self) -> Result<Vec<SearchKey>> {
        let mut criteria = vec![self.search_key()?];
        while !self.eof() {
            criteria.push(self.arg(Self::search_key)?);
        }
        Ok(criteria)
    }

    /// RFC 5256 `sort`: `SORT SP sort-criteria SP search-charset 1*(SP search-key)`, with
    /// the RFC 5957 DISPLAYFROM/DISPLAYTO keys and the RFC 5267 §3 ESORT
    /// `RETURN (...)` before the criteria.
    pub(super) fn sort(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let returns = if self.keyword("RETURN") {
            Some(self.search_returns(false)?)
        } else {
            None
        };
        let criteria = self.paren_list(1, |p| {
            let mut w = p.word()?;
            let reverse = w == "REVERSE";
            if reverse {
                p.sp()?;
                w = p.word()?;
            }
            let key = match w.as_str() {
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                "DISPLAYFROM" => SortKey::DisplayFrom,
                "DISPLAYTO" => SortKey::DisplayTo,
                _ => return Err(p.syntax("unknown sort key")),
            };
            Ok(SortCriterion { reverse, key })
        })?;
        self.sp()?;
        let charset = self.charset()?;
        self.sp()?;
        let search = self.search_keys()?;
        Ok(CommandBody::Sort(SortCommand {
            uid,
            returns,
            criteria,
            charset,
            search,
        }))
    }

    /// RFC 5256 `thread`: `THREAD SP thread-alg SP search-charset 1*(SP search-key)`.
    pub(super) fn thread(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let algorithm = match self.word()?.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            _ => return Err(self.syntax("unknown thread algorithm")),
        };
        self.sp()?;
        let charset = self.charset()?;
        self.sp()?;
        let search = self.search_keys()?;
        Ok(CommandBody::Thread(ThreadCommand {
            uid,
            algorithm,
            charset,
            search,
        }))
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= self.opts.max_depth {
            return Err(self.error(ParseErrorKind::TooDeep, "search too deeply nested"));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn search_string(&mut self) -> Result<String> {
        self.arg(Self::astring_utf8)
    }

    fn search_date(&mut self) -> Result<Date> {
        self.arg(Self::date)
    }

    fn search_key(&mut self) -> Result<SearchKey> {
        match self.peek() {
            Some(b'(') => {
                return self.nested(|p| p.paren_list(1, Self::search_key).map(SearchKey::And));
            }
            Some(b'0'..=b'9' | b'*' | b'$') => {
                return self.sequence_set().map(SearchKey::SequenceSet);
            }
            _ => {}
        }
        let w = self.word()?;
        Ok(match w.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Answered,
            "DELETED" => SearchKey::Deleted,
            "DRAFT" => SearchKey::Draft,
            "FLAGGED" => SearchKey::Flagged,
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "RECENT" => SearchKey::Recent,
            "SEEN" => SearchKey::Seen,
            "UNANSWERED" => SearchKey::Unanswered,
            "UNDELETED" => SearchKey::Undeleted,
            "UNDRAFT" => SearchKey::Undraft,
            "UNFLAGGED" => SearchKey::Unflagged,
            "UNSEEN" => SearchKey::Unseen,
            "BCC" => SearchKey::Bcc(self.search_string()?),
            "BODY" => SearchKey::Body(self.search_string()?),
            "CC" => SearchKey::Cc(self.search_string()?),
            "FROM" => SearchKey::From(self.search_string()?),
            "SUBJECT" => SearchKey::Subject(self.search_string()?),
            "TEXT" => SearchKey::Text(self.search_string()?),
            "TO" => SearchKey::To(self.search_string()?),
            "BEFORE" => SearchKey::Before(self.search_date()?),
            "ON" => SearchKey::On(self.search_date()?),
            "SINCE" => SearchKey::Since(self.search_date()?),
            "SENTBEFORE" => SearchKey::SentBefore(self.search_date()?),
            "SENTON" => SearchKey::SentOn(self.search_date()?),
            "SENTSINCE" => SearchKey::SentSince(self.search_date()?),
            "HEADER" => {
                let name = self.search_string()?;
                if !valid_field_name(&name) {
                    return Err(self.syntax("invalid header field name"));
                }
                SearchKey::Header(name, self.search_string()?)
            }
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let k = String::from_utf8_lossy(self.atom()?).into_owned();
                if w == "KEYWORD" {
                    SearchKey::Keyword(k)
                } else {
                    SearchKey::Unkeyword(k)
                }
            }
            "LARGER" => SearchKey::Larger(self.arg(Self::number64)?),
            "SMALLER" => SearchKey::Smaller(self.arg(Self::number64)?),
            "NOT" => SearchKey::Not(Box::new(self.arg(|p| p.nested(Self::search_key))?)),
            "OR" => {
                let a = self.arg(|p| p.nested(Self::search_key))?;
                let b = self.arg(|p| p.nested(Self::search_key))?;
                SearchKey::Or(Box::new(a), Box::new(b))
            }
            "UID" => SearchKey::Uid(self.arg(Self::sequence_set)?),
            "MODSEQ" => {
                self.sp()?;
                let mut entry = None;
                if self.peek() == Some(b'"') {
                    let name = self.quoted()?;
                    let flag = name
                        .get(..7)
                        .filter(|p| p.eq_ignore_ascii_case(b"/flags/"))
                        .map(|_| &name[7..])
                        .filter(|f| !f.is_empty())
                        .ok_or_else(|| self.syntax("invalid MODSEQ entry name"))?;
                    let flag = Flag::from_wire(&String::from_utf8_lossy(flag));
                    self.sp()?;
                    let kind = match self.word()?.as_str() {
                        "PRIV" => EntryType::Private,
                        "SHARED" => EntryType::Shared,
                        "ALL" => EntryType::All,
                        _ => return Err(self.syntax("invalid MODSEQ entry type")),
                    };
                    entry = Some((flag, kind));
                    self.sp()?;
                }
                SearchKey::ModSeq {
                    entry,
                    modseq: self.number64()?,
                }
            }
            "OLDER" => SearchKey::Older(self.arg(Self::nz_number)?),
            "YOUNGER" => SearchKey::Younger(self.arg(Self::nz_number)?),
            _ => return Err(self.syntax("unknown search key")),
        })
    }
}
