//! The fast reader behind [`BodyFields::parse`]: one pass over a JSON
//! body, no serde machinery, for the shapes request bodies have.
//!
//! It answers only when it is sure to answer as the serde_json reader
//! would, and otherwise gives up (`None`) so that reader decides: on
//! anything that is not JSON, a number with a fraction or an exponent where
//! serde_json would read its value (and refuse one out of range), a whole
//! number past `u64`, a `\u` escape of a surrogate, an escaped key where
//! keys are read (the top level's, a message's or content part's), a
//! wanted field's escaped text, nesting deeper than [`MAX_DEPTH`], a string
//! that is not UTF-8, a top-level value that is not an object.
//!
//! Where it reads: string text a word of 8 bytes at a time while the
//! words are plain (printable ASCII, no quote, no backslash), up to
//! [`WORDS`] of them, in a loop inlined where strings are read that
//! returns at the closing quote (keys, names, short text end there); past
//! that, `memchr` finds the next quote or backslash and the text before it
//! is checked in one vectorized pass (its lowest and highest byte; text
//! past ASCII takes a second, counting characters); then the byte that
//! needs a look alone (no control characters; characters are
//! the bytes that do not continue a UTF-8 sequence; a string past ASCII is
//! checked as UTF-8 at its end, and outside strings the grammar admits
//! ASCII only); escapes are checked and count one character.

use std::borrow::Cow;

use super::{BodyFields, KeyRoles, PartKey, Probe};

/// Nesting deeper than this is left to serde_json (its own limit is 128).
const MAX_DEPTH: usize = 64;

/// Words of plain string text read one at a time before the rest of the
/// text is read by `memchr`: a model's name fits.
const WORDS: usize = 6;

impl BodyFields {
    /// `body`'s fields by the fast reader, or `None` when the serde_json
    /// reader must decide.
    pub(super) fn scan<S: AsRef<str>>(body: &[u8], wanted: &[S]) -> Option<BodyFields> {
        let mut scan = Scan { bytes: body, at: 0 };
        let mut out = BodyFields::default();
        scan.space();
        scan.object(0, |scan, key, depth| {
            let roles = KeyRoles::of(key?, wanted);
            if roles == KeyRoles::NONE {
                return scan.skip(depth);
            }
            let probe = scan.probe(roles.wanted.is_some(), depth)?;
            out.take(roles, probe, wanted);
            Some(())
        })?;
        scan.space();
        (scan.at == body.len()).then_some(out)
    }
}

/// A string read: its characters, and its bytes between the quotes
/// (UTF-8, checked).
struct Str<'a> {
    chars: usize,
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Str<'a> {
    /// Its bytes, when it has no escapes: its text.
    fn plain(&self) -> Option<&'a [u8]> {
        (!self.escaped).then_some(self.raw)
    }
}

/// A number read.
enum Num {
    /// A whole number that fits `u64`.
    Whole(u64),
    /// A negative whole number of at most 18 digits (no `u64`, no range error).
    Negative,
    /// A fraction, an exponent or a whole number past `u64`: serde_json
    /// reads its value as a float, and may refuse it.
    Other,
}

struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// An object (its `{` next), calling `field` with each key's text
    /// (`None` when it has escapes: where keys are read, that gives up)
    /// and the depth of its value, the value next. The key goes as a slice,
    /// in registers: a whole `Str` went through the stack, and reading it
    /// back stalled on the stores just made.
    fn object(
        &mut self,
        depth: usize,
        mut field: impl FnMut(&mut Self, Option<&'a [u8]>, usize) -> Option<()>,
    ) -> Option<()> {
        self.items(b'{', b'}', depth, |scan, depth| {
            let key = scan.string()?.plain();
            scan.space();
            if scan.next()? != b':' {
                return None;
            }
            scan.space();
            field(scan, key, depth)
        })
    }

    /// An array (its `[` next), calling `element` with the depth of each
    /// element, the element next.
    fn array(
        &mut self,
        depth: usize,
        element: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        self.items(b'[', b']', depth, element)
    }

    /// Items between `open` (next) and `close`, separated by commas.
    fn items(
        &mut self,
        open: u8,
        close: u8,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if depth >= MAX_DEPTH || self.next()? != open {
            return None;
        }
        self.space();
        if self.eat(close) {
            return Some(());
        }
        loop {
            self.space();
            item(self, depth + 1)?;
            self.space();
            match self.next()? {
                b',' => {}
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string (its `"` next).
    #[inline(always)]
    fn string(&mut self) -> Option<Str<'a>> {
        if self.next()? != b'"' {
            return None;
        }
        let start = self.at;
        // Keys, names and short text: plain words up to the closing quote.
        // `plain_word`'s test, written out: through `plain_word` (and the
        // byte after it read again) the 1 KB body took 281-290 ns, not 263.
        let mut words = 0;
        while words < WORDS
            && let Some(word) = self.bytes[self.at..].first_chunk::<8>()
        {
            let plain = (specials(u64::from_le_bytes(*word)).trailing_zeros() / 8) as usize;
            self.at += plain;
            if plain < 8 {
                if word[plain] == b'"' {
                    self.at += 1;
                    return Some(Str {
                        chars: self.at - 1 - start,
                        raw: &self.bytes[start..self.at - 1],
                        escaped: false,
                    });
                }
                break;
            }
            words += 1;
        }
        self.string_rest(start, words)
    }

    /// The rest of a string whose text began at `start` and whose `words`
    /// plain words were read: long text, escapes, text past ASCII, the
    /// last bytes of the body.
    fn string_rest(&mut self, start: usize, mut words: usize) -> Option<Str<'a>> {
        let (mut chars, mut escaped, mut wide) = (self.at - start, false, false);
        loop {
            // Plain text a word at a time, then, past `WORDS` of them, by
            // `memchr`, to the next byte that needs a look.
            loop {
                if words == WORDS {
                    let (stretch, past_ascii) = self.stretch()?;
                    chars += stretch;
                    wide |= past_ascii;
                    break;
                }
                let plain = self.plain_word();
                chars += plain;
                if plain < 8 {
                    break;
                }
                words += 1;
            }
            words = 0;
            match self.next()? {
                b'"' => {
                    let raw = &self.bytes[start..self.at - 1];
                    // Text past ASCII must be UTF-8 (outside strings the
                    // grammar admits ASCII only).
                    if wide {
                        std::str::from_utf8(raw).ok()?;
                    }
                    return Some(Str {
                        chars,
                        raw,
                        escaped,
                    });
                }
                b'\\' => {
                    self.escape()?;
                    chars += 1;
                    escaped = true;
                }
                0..0x20 => return None,
                // Characters are the bytes that do not continue a UTF-8
                // sequence (checked at the end).
                byte => {
                    chars += usize::from(byte & 0xC0 != 0x80);
                    wide = true;
                }
            }
        }
    }

    /// Steps over string text up to the next quote or backslash (or the
    /// end of the body) at `memchr`'s pace, then checks what it stepped
    /// over: its characters and whether any byte is past ASCII (one pass
    /// for its lowest and highest byte, a second to count characters past
    /// ASCII), or `None` on a control character.
    fn stretch(&mut self) -> Option<(usize, bool)> {
        let rest = &self.bytes[self.at..];
        let stretch = &rest[..memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len())];
        self.at += stretch.len();
        // The lowest and highest byte, in one pass the compiler vectorizes.
        let (low, high) = stretch.iter().fold((u8::MAX, 0), |(low, high), &byte| {
            (low.min(byte), high.max(byte))
        });
        if low < 0x20 {
            return None;
        }
        if high < 0x80 {
            return Some((stretch.len(), false));
        }
        // Characters are the bytes that do not continue a UTF-8 sequence.
        let chars = stretch.iter().filter(|&&byte| byte & 0xC0 != 0x80).count();
        Some((chars, true))
    }

    /// Steps over the plain bytes (printable ASCII, no quote, no
    /// backslash) of the next word of string text: how many, 8 when all
    /// are; 0 when fewer than 8 bytes are left (read a byte at a time).
    fn plain_word(&mut self) -> usize {
        let Some(word) = self.bytes[self.at..].first_chunk::<8>() else {
            return 0;
        };
        let plain = (specials(u64::from_le_bytes(*word)).trailing_zeros() / 8) as usize;
        self.at += plain;
        plain
    }

    /// An escape, after its `\`: one character (a surrogate gives up).
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.bytes.get(self.at..self.at + 4)?;
                self.at += 4;
                let unit = hex.iter().try_fold(0u32, |unit, &digit| {
                    Some(unit * 16 + char::from(digit).to_digit(16)?)
                })?;
                (!(0xD800..=0xDFFF).contains(&unit)).then_some(())
            }
            _ => None,
        }
    }

    /// A number (its first byte next), by JSON's grammar.
    fn number(&mut self) -> Option<Num> {
        let negative = self.eat(b'-');
        let start = self.at;
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let whole = &self.bytes[start..self.at];
        let mut other = false;
        if self.eat(b'.') {
            if !self.some_digits() {
                return None;
            }
            other = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !self.some_digits() {
                return None;
            }
            other = true;
        }
        Some(match (other, negative) {
            (true, _) => Num::Other,
            (false, true) if whole.len() <= 18 => Num::Negative,
            (false, true) => Num::Other,
            (false, false) => whole
                .iter()
                .try_fold(0u64, |n, &d| {
                    n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                })
                .map_or(Num::Other, Num::Whole),
        })
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> bool {
        let start = self.at;
        self.digits();
        self.at > start
    }

    fn literal(&mut self) -> Option<()> {
        let word: &[u8] = match self.peek()? {
            b't' => b"true",
            b'f' => b"false",
            _ => b"null",
        };
        let found = self.bytes.get(self.at..self.at + word.len())? == word;
        self.at += word.len();
        found.then_some(())
    }

    /// Any value, only checked (serde_json's `IgnoredAny`: a number's
    /// grammar, not its range).
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth, |scan, _, depth| scan.skip(depth)),
            b'[' => self.array(depth, |scan, depth| scan.skip(depth)),
            b't' | b'f' | b'n' => self.literal(),
            _ => self.number().map(drop),
        }
    }

    /// A number whose value serde_json would read, and drop.
    fn read_number(&mut self) -> Option<Option<u64>> {
        match self.number()? {
            Num::Whole(n) => Some(Some(n)),
            Num::Negative => Some(None),
            Num::Other => None,
        }
    }

    /// The characters of an input value, as `CharsVisitor` counts them.
    fn count(&mut self, depth: usize) -> Option<usize> {
        match self.peek()? {
            b'"' => Some(self.string()?.chars),
            b'[' => {
                let mut total = 0;
                self.array(depth, |scan, depth| {
                    total += scan.count(depth)?;
                    Some(())
                })?;
                Some(total)
            }
            b'{' => {
                let (mut content, mut text) = (0, 0);
                self.object(depth, |scan, key, depth| {
                    match PartKey::of(key?) {
                        PartKey::Content => content = scan.count(depth)?,
                        PartKey::Text => text = scan.count(depth)?,
                        PartKey::Other => scan.skip(depth)?,
                    }
                    Some(())
                })?;
                Some(content + text)
            }
            b't' | b'f' | b'n' => self.literal().map(|()| 0),
            _ => self.read_number().map(|_| 0),
        }
    }

    /// A top-level field's value, as `ProbeVisitor` reads it.
    #[inline(always)]
    fn probe(&mut self, keep_text: bool, depth: usize) -> Option<Probe<'a>> {
        Some(match self.peek()? {
            b'"' => {
                let string = self.string()?;
                let text = match keep_text {
                    true => Some(Cow::Borrowed(std::str::from_utf8(string.plain()?).ok()?)),
                    false => None,
                };
                Probe {
                    chars: string.chars,
                    number: None,
                    text,
                }
            }
            b'[' | b'{' => Probe {
                chars: self.count(depth)?,
                ..Probe::default()
            },
            b't' | b'f' | b'n' => {
                self.literal()?;
                Probe::default()
            }
            _ => Probe {
                number: self.read_number()?,
                ..Probe::default()
            },
        })
    }
}

/// The high bit of each byte of `w` (little-endian) that is a quote, a
/// backslash, a control character or past ASCII, exact for the lowest
/// such byte: the zero-byte tests used borrow only upward, from a byte
/// they flag.
fn specials(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES << 7;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) | control | (w & HIGH)
}
