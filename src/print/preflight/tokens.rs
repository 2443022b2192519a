//! A streaming tokenizer for PDF content streams: one operator at a time with its operands, so
//! a page of ten million operators costs the memory of one operator, not a list of them all
//! (lopdf's `Content::decode` collects every operation before the first can be looked at).
//!
//! It reads what preflight needs (numbers, names, strings and the arrays `TJ` shows) and skips
//! the rest (dictionaries, inline image data) without allocating for it.
//!
//! The same lexer reads the file's own objects (dictionaries, arrays, references) for the reader
//! that fetches them on demand (see `file`): PDF writes both in one syntax.

use lopdf::{Dictionary, Object, StringFormat};

/// Arrays inside arrays deeper than this are skipped whole: no operator preflight reads takes
/// more than one level, and a hostile `[[[[...` must not recurse without end.
pub(super) const MAX_NESTING: usize = 32;
/// Operands kept for one operator; more are dropped from the front (operators use the last
/// ones, and no operator takes more than a handful).
const MAX_OPERANDS: usize = 32;

/// Objects inside objects this deep at most: a hostile `[[[[...` or `<<<<...` is refused, not
/// recursed into without end.
const MAX_OBJECT_NESTING: usize = 64;

/// One operand, as far as preflight reads it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Operand<'a> {
    Number(f32),
    Name(&'a [u8]),
    /// A literal or hex string, decoded to its bytes.
    Str(Vec<u8>),
    Array(Vec<Operand<'a>>),
    /// `true`, `null`, a dictionary or anything else preflight does not read.
    Other,
}

impl Operand<'_> {
    pub(super) fn number(&self) -> Option<f32> {
        match self {
            Operand::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// The operators of one content stream, read in order.
pub(super) struct Tokens<'a> {
    bytes: &'a [u8],
    at: usize,
}

fn is_white(b: u8) -> bool {
    matches!(b, b'\0' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

fn is_delimiter(b: u8) -> bool {
    matches!(b, b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%')
}

fn is_regular(b: u8) -> bool {
    !is_white(b) && !is_delimiter(b)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl<'a> Tokens<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Tokens { bytes, at: 0 }
    }

    /// The next operator, with its operands in `operands` (cleared first); `None` at the end.
    pub(super) fn next_operator(&mut self, operands: &mut Vec<Operand<'a>>) -> Option<&'a [u8]> {
        operands.clear();
        loop {
            self.skip_white();
            let &first = self.bytes.get(self.at)?;
            let operand = match first {
                b'/' => Operand::Name(self.regular_run(self.at + 1)),
                b'(' => Operand::Str(self.literal_string()),
                b'<' if self.bytes.get(self.at + 1) == Some(&b'<') => {
                    self.skip_dictionary();
                    Operand::Other
                }
                b'<' => Operand::Str(self.hex_string()),
                b'[' => {
                    self.at += 1;
                    self.array(0)
                }
                // Stray closers and braces: skipped, as readers do.
                b']' | b'>' | b')' | b'{' | b'}' => {
                    self.at += 1;
                    continue;
                }
                _ => {
                    let word = self.regular_run(self.at);
                    match self.word(word) {
                        Some(operand) => operand,
                        None => {
                            if word == b"BI" {
                                self.skip_inline_image();
                            }
                            return Some(word);
                        }
                    }
                }
            };
            if operands.len() == MAX_OPERANDS {
                operands.remove(0);
            }
            operands.push(operand);
        }
    }

    fn skip_white(&mut self) {
        while let Some(&b) = self.bytes.get(self.at) {
            if is_white(b) {
                self.at += 1;
            } else if b == b'%' {
                while self.bytes.get(self.at).is_some_and(|&b| b != b'\n' && b != b'\r') {
                    self.at += 1;
                }
            } else {
                break;
            }
        }
    }

    /// The run of regular characters from `start`; the cursor moves past it.
    fn regular_run(&mut self, start: usize) -> &'a [u8] {
        let mut end = start;
        while self.bytes.get(end).is_some_and(|&b| is_regular(b)) {
            end += 1;
        }
        self.at = end;
        let bytes: &'a [u8] = self.bytes;
        &bytes[start..end]
    }

    /// A number or a keyword operand (`true`, `false`, `null`) as an operand, else `None`: an
    /// operator.
    fn word(&self, word: &'a [u8]) -> Option<Operand<'a>> {
        match word {
            b"true" | b"false" | b"null" => Some(Operand::Other),
            [b'0'..=b'9' | b'+' | b'-' | b'.', ..] => {
                // Malformed numbers ("1.2.3", "--5") read as 0, as viewers are lenient.
                Some(Operand::Number(
                    std::str::from_utf8(word).ok().and_then(|s| s.parse().ok()).unwrap_or(0.0),
                ))
            }
            _ => None,
        }
    }

    fn literal_string(&mut self) -> Vec<u8> {
        self.at += 1;
        let mut out = Vec::new();
        let mut depth = 0usize;
        while let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            match b {
                b'(' => {
                    depth += 1;
                    out.push(b);
                }
                b')' if depth == 0 => break,
                b')' => {
                    depth -= 1;
                    out.push(b);
                }
                b'\\' => self.escape(&mut out),
                _ => out.push(b),
            }
        }
        out
    }

    /// The character after a backslash in a literal string.
    fn escape(&mut self, out: &mut Vec<u8>) {
        let Some(&b) = self.bytes.get(self.at) else { return };
        self.at += 1;
        match b {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'0'..=b'7' => {
                let mut value = u32::from(b - b'0');
                for _ in 0..2 {
                    match self.bytes.get(self.at) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            self.at += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            // A line break after a backslash continues the string.
            b'\r' => {
                if self.bytes.get(self.at) == Some(&b'\n') {
                    self.at += 1;
                }
            }
            b'\n' => {}
            other => out.push(other),
        }
    }

    fn hex_string(&mut self) -> Vec<u8> {
        self.at += 1;
        let mut out = Vec::new();
        let mut high: Option<u8> = None;
        while let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            if b == b'>' {
                break;
            }
            if let Some(v) = hex_value(b) {
                match high.take() {
                    Some(h) => out.push(h << 4 | v),
                    None => high = Some(v),
                }
            }
        }
        if let Some(h) = high {
            out.push(h << 4);
        }
        out
    }

    /// Where the cursor is, in bytes from the start.
    pub(super) fn position(&self) -> usize {
        self.at
    }

    /// The next run of regular characters (a keyword such as `obj` or `stream`), white space
    /// and comments skipped; empty at the end or before a delimiter.
    pub(super) fn keyword(&mut self) -> &'a [u8] {
        self.skip_white();
        self.regular_run(self.at)
    }

    /// The next object of the file's own syntax, as lopdf holds it (a reference `12 0 R` is
    /// one); `None` if the bytes are not one, or end before it does.
    pub(super) fn object(&mut self) -> Option<Object> {
        self.object_within(0)
    }

    fn object_within(&mut self, depth: usize) -> Option<Object> {
        if depth > MAX_OBJECT_NESTING {
            return None;
        }
        self.skip_white();
        let &first = self.bytes.get(self.at)?;
        let object = match first {
            b'/' => Object::Name(decoded_name(self.regular_run(self.at + 1))),
            b'(' => {
                let text = self.literal_string();
                if self.bytes.get(self.at.checked_sub(1)?) != Some(&b')') {
                    return None;
                }
                Object::String(text, StringFormat::Literal)
            }
            b'<' if self.bytes.get(self.at + 1) == Some(&b'<') => {
                let mut dictionary = Dictionary::new();
                self.dictionary_entries(|tokens, key| {
                    dictionary.set(key, tokens.object_within(depth + 1)?);
                    Some(())
                })?;
                Object::Dictionary(dictionary)
            }
            b'<' => {
                let text = self.hex_string();
                if self.bytes.get(self.at.checked_sub(1)?) != Some(&b'>') {
                    return None;
                }
                Object::String(text, StringFormat::Hexadecimal)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_white();
                    if *self.bytes.get(self.at)? == b']' {
                        self.at += 1;
                        break;
                    }
                    items.push(self.object_within(depth + 1)?);
                }
                Object::Array(items)
            }
            _ if is_regular(first) => {
                let word = self.regular_run(self.at);
                match word {
                    b"true" => Object::Boolean(true),
                    b"false" => Object::Boolean(false),
                    b"null" => Object::Null,
                    _ => {
                        let text = std::str::from_utf8(word).ok()?;
                        match text.parse::<i64>() {
                            Ok(number) => self.reference_after(number).unwrap_or(Object::Integer(number)),
                            Err(_) => Object::Real(text.parse::<f32>().ok().filter(|n| n.is_finite())?),
                        }
                    }
                }
            }
            _ => return None,
        };
        Some(object)
    }

    /// A page tree node's dictionary, its `Kids` array read into `kids` as references alone (and
    /// left in the dictionary empty): a book's root may list 20,000 pages, which as lopdf
    /// objects take ~128 bytes each.
    pub(super) fn page_node(&mut self, kids: &mut Vec<(u32, u16)>) -> Option<Object> {
        self.skip_white();
        let mut dictionary = Dictionary::new();
        self.dictionary_entries(|tokens, key| {
            tokens.skip_white();
            if key == b"Kids" && tokens.bytes.get(tokens.at) == Some(&b'[') {
                tokens.at += 1;
                loop {
                    tokens.skip_white();
                    if *tokens.bytes.get(tokens.at)? == b']' {
                        tokens.at += 1;
                        dictionary.set(key, Object::Array(Vec::new()));
                        return Some(());
                    }
                    if let Object::Reference(kid) = tokens.object_within(1)? {
                        kids.push(kid);
                    }
                }
            }
            dictionary.set(key, tokens.object_within(1)?);
            Some(())
        })?;
        Some(Object::Dictionary(dictionary))
    }

    /// The entries of the dictionary at the cursor (`<<` not yet read), each key given to
    /// `value` to read its value; `None` if they do not read or end early.
    fn dictionary_entries(&mut self, mut value: impl FnMut(&mut Self, Vec<u8>) -> Option<()>) -> Option<()> {
        if !self.bytes.get(self.at..)?.starts_with(b"<<") {
            return None;
        }
        self.at += 2;
        loop {
            self.skip_white();
            match self.bytes.get(self.at)? {
                b'>' if self.bytes.get(self.at + 1) == Some(&b'>') => {
                    self.at += 2;
                    return Some(());
                }
                b'/' => {
                    let key = decoded_name(self.regular_run(self.at + 1));
                    value(self, key)?;
                }
                _ => return None,
            }
        }
    }

    /// After the integer `number`: `gen R` makes it a reference; otherwise nothing is read.
    fn reference_after(&mut self, number: i64) -> Option<Object> {
        let back = self.at;
        let reference = (|| {
            let number = u32::try_from(number).ok()?;
            let generation = std::str::from_utf8(self.keyword()).ok()?.parse::<u16>().ok()?;
            (self.keyword() == b"R").then_some(Object::Reference((number, generation)))
        })();
        if reference.is_none() {
            self.at = back;
        }
        reference
    }

    /// The elements of an array whose `[` was read; nested past [`MAX_NESTING`], skipped.
    fn array(&mut self, depth: usize) -> Operand<'a> {
        let mut items = Vec::new();
        loop {
            self.skip_white();
            let Some(&b) = self.bytes.get(self.at) else { break };
            let item = match b {
                b']' => {
                    self.at += 1;
                    break;
                }
                b'[' if depth + 1 >= MAX_NESTING => {
                    self.at += 1;
                    self.skip_nested(b"[", b"]");
                    Operand::Other
                }
                b'[' => {
                    self.at += 1;
                    self.array(depth + 1)
                }
                b'(' => Operand::Str(self.literal_string()),
                b'<' if self.bytes.get(self.at + 1) == Some(&b'<') => {
                    self.skip_dictionary();
                    Operand::Other
                }
                b'<' => Operand::Str(self.hex_string()),
                b'/' => Operand::Name(self.regular_run(self.at + 1)),
                _ if is_regular(b) => {
                    let word = self.regular_run(self.at);
                    self.word(word).unwrap_or(Operand::Other)
                }
                _ => {
                    self.at += 1;
                    continue;
                }
            };
            items.push(item);
        }
        Operand::Array(items)
    }

    /// Skips to the `close` that balances an `open` already read, without recursion; strings
    /// are skipped whole so a bracket inside one does not count. Serves arrays (`[` `]`) and
    /// dictionaries (`<<` `>>`) alike.
    fn skip_nested(&mut self, open: &[u8], close: &[u8]) {
        let mut depth = 1usize;
        while let Some(&b) = self.bytes.get(self.at) {
            let rest = &self.bytes[self.at..];
            if b == b'(' {
                self.literal_string();
                continue;
            } else if rest.starts_with(open) {
                depth += 1;
                self.at += open.len();
                continue;
            } else if rest.starts_with(close) {
                depth -= 1;
                self.at += close.len();
                if depth == 0 {
                    return;
                }
                continue;
            }
            self.at += 1;
        }
    }

    /// Skips `<< ... >>`, nested dictionaries and all.
    fn skip_dictionary(&mut self) {
        self.at += 2;
        self.skip_nested(b"<<", b">>");
    }

    /// After `BI`: the image's dictionary up to `ID`, then its data up to `EI` standing alone.
    fn skip_inline_image(&mut self) {
        let found = |bytes: &[u8], at: usize, word: &[u8]| {
            bytes[at..].starts_with(word)
                && at.checked_sub(1).is_none_or(|p| is_white(bytes[p]))
                && bytes.get(at + word.len()).is_none_or(|&b| is_white(b))
        };
        while self.at < self.bytes.len() && !found(self.bytes, self.at, b"ID") {
            self.at += 1;
        }
        self.at += 3;
        while self.at < self.bytes.len() && !found(self.bytes, self.at, b"EI") {
            self.at += 1;
        }
        self.at = (self.at + 2).min(self.bytes.len());
    }
}

/// A name's bytes with its `#xx` escapes decoded.
fn decoded_name(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(&b) = raw.get(at) {
        let escaped = (b == b'#')
            .then(|| Some(hex_value(*raw.get(at + 1)?)? << 4 | hex_value(*raw.get(at + 2)?)?))
            .flatten();
        match escaped {
            Some(value) => {
                out.push(value);
                at += 3;
            }
            None => {
                out.push(b);
                at += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(content: &[u8]) -> Vec<(String, Vec<Operand<'_>>)> {
        let mut tokens = Tokens::new(content);
        let mut operands = Vec::new();
        let mut out = Vec::new();
        while let Some(op) = tokens.next_operator(&mut operands) {
            out.push((String::from_utf8_lossy(op).into_owned(), operands.clone()));
        }
        out
    }

    #[test]
    fn operators_come_with_their_operands() {
        let ops =
            all(b"q 1 0 0 1 -2.5 .5 cm\n/F1 12 Tf (a\\(b\\)\\101\\\nc) Tj [<0041> -20 (B)] TJ Q % note\nS");
        let names: Vec<&str> = ops.iter().map(|(op, _)| op.as_str()).collect();
        assert_eq!(names, ["q", "cm", "Tf", "Tj", "TJ", "Q", "S"]);
        assert_eq!(ops[1].1[4], Operand::Number(-2.5));
        assert_eq!(ops[1].1[5], Operand::Number(0.5));
        assert_eq!(ops[2].1, [Operand::Name(b"F1"), Operand::Number(12.0)]);
        assert_eq!(ops[3].1, [Operand::Str(b"a(b)Ac".to_vec())]);
        assert_eq!(
            ops[4].1,
            [Operand::Array(vec![
                Operand::Str(vec![0, 0x41]),
                Operand::Number(-20.0),
                Operand::Str(b"B".to_vec())
            ])]
        );
    }

    #[test]
    fn dictionaries_and_inline_images_are_skipped() {
        let ops = all(b"/P <</MCID 0 /A <</B (>>)>> >> BDC EMC BI /W 2 /H 1 ID \x00EI\xff EI Q");
        let names: Vec<&str> = ops.iter().map(|(op, _)| op.as_str()).collect();
        assert_eq!(names, ["BDC", "EMC", "BI", "Q"]);
    }

    #[test]
    fn deep_arrays_and_endless_operands_stay_bounded() {
        let mut hostile = b"[".repeat(100_000);
        hostile.extend(b"1 2 3 TJ");
        let ops = all(&hostile);
        // Unbalanced to the end: the array swallows the rest, and nothing overflows the stack.
        assert!(ops.is_empty(), "{ops:?}");
        let many = [b"1 ".repeat(10_000).as_slice(), b"re"].concat();
        let ops = all(&many);
        assert_eq!(ops[0].1.len(), MAX_OPERANDS);
    }
}
