//! The `DATA` phase: turns the raw bytes after `354` into the message, or into
//! a reason to refuse it, and finds exactly where the data ends.
//!
//! smtp-proto's `DataReceiver` undoes dot-stuffing (RFC 5321 §4.5.2), but it
//! keeps bare CR/LF as content and, after `<CRLF>.<CR>`, also ends on
//! `<CR><CR><LF>`. So every byte is first checked by [`Scanner`]; only a clean
//! prefix (every CR followed by LF, every LF preceded by CR, lines within
//! RFC 5321 §4.5.3.1.6) is fed to `DataReceiver`, on which it ends exactly at
//! `<CRLF>.<CRLF>`. After the first bad byte or once the message is too big,
//! the rest is drained by [`Collector`]'s own strict matcher, which also ends
//! only at `<CRLF>.<CRLF>` — so `<LF>.<CR><LF>`, `<CR>.<CR>`, `<CRLF>.<LF>` and
//! friends can never end a message or start a second one (CVE-2023-51764).
//! (`DummyDataReceiver` shares the `<CR><CR><LF>` quirk, so it is not used.)

use smtp_proto::request::receiver::DataReceiver;

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF,
/// "not counting the leading dot duplicated for transparency".
const MAX_TEXT_LINE: usize = 1000;

/// Why a message was refused while it was still arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A CR not followed by LF, or an LF not preceded by CR.
    BareNewline,
    /// A text line over 1000 octets.
    LineTooLong,
    /// More than the configured maximum message size.
    TooBig,
    /// A NUL octet: not text in any SMTP body type (RFC 6152 §2 excludes it
    /// from 8BITMIME too), and many servers cut the message at it.
    Nul,
}

impl Rejection {
    /// The `reason` label of the intake's refusal counter.
    pub fn metric_reason(self) -> &'static str {
        match self {
            Rejection::BareNewline => "bare_newline",
            Rejection::LineTooLong => "line_too_long",
            Rejection::TooBig => "too_big",
            Rejection::Nul => "nul",
        }
    }
}

/// What the collector made of the data once the final dot arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Message(Vec<u8>),
    Rejected(Rejection),
}

/// Streaming line-hygiene check over the raw (still dot-stuffed) bytes.
#[derive(Debug, Clone, Copy)]
struct Scanner {
    prev: u8,
    /// Octets of the current line so far, CR included, LF not.
    line_len: usize,
    /// The current line started with a (stuffing) dot.
    dot_line: bool,
}

impl Scanner {
    /// The `354` reply's CRLF ends the line before the first data line.
    fn new() -> Self {
        Self {
            prev: b'\n',
            line_len: 0,
            dot_line: false,
        }
    }

    /// Advances over `input` up to the first offending byte; returns how many
    /// bytes are clean and, if it stopped early, why.
    fn run(&mut self, input: &[u8]) -> (usize, Option<Rejection>) {
        for (i, &b) in input.iter().enumerate() {
            if self.prev == b'\r' && b != b'\n' || b == b'\n' && self.prev != b'\r' {
                return (i, Some(Rejection::BareNewline));
            }
            if b == 0 {
                return (i, Some(Rejection::Nul));
            }
            if b == b'\n' {
                self.line_len = 0;
                self.dot_line = false;
            } else {
                if self.line_len == 0 {
                    self.dot_line = b == b'.';
                }
                self.line_len += 1;
                // line_len counts the CR, so adding the LF must stay within the limit.
                if self.line_len + 1 > MAX_TEXT_LINE + usize::from(self.dot_line) {
                    return (i, Some(Rejection::LineTooLong));
                }
            }
            self.prev = b;
        }
        (input.len(), None)
    }
}

/// Collects one message; feed it with [`Collector::ingest`] until it says done.
pub struct Collector {
    receiver: DataReceiver,
    body: Vec<u8>,
    scanner: Scanner,
    max_size: usize,
    /// Take the message out in pieces of this size as it arrives
    /// ([`Collector::take_piece`]); `None`: keep it whole.
    piece: Option<usize>,
    /// Bytes already taken out in pieces.
    taken: usize,
    /// Set once the message is refused; from then on bytes are only drained.
    rejected: Option<Rejection>,
    /// The last four raw bytes, for the strict end matcher while draining.
    tail: [u8; 4],
}

impl Collector {
    #[cfg(test)]
    pub fn new(max_size: usize) -> Self {
        Self::in_pieces(max_size, None)
    }

    /// A collector whose message is taken out in pieces of `piece` bytes.
    pub fn in_pieces(max_size: usize, piece: Option<usize>) -> Self {
        let mut receiver = DataReceiver::new();
        // DataReceiver starts as if mid-line, so a first line of "." (empty
        // message) or ".." (stuffed) would be missed; feed it the CRLF that
        // ended the DATA command, into a throwaway buffer.
        receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
        Self {
            receiver,
            body: Vec::new(),
            scanner: Scanner::new(),
            max_size,
            piece: piece.filter(|&p| p > 0),
            taken: 0,
            rejected: None,
            tail: [0, 0, b'\r', b'\n'],
        }
    }

    /// Consumes bytes of `input`; returns how many, and the outcome once the
    /// final `<CRLF>.<CRLF>` was seen. Bytes after it are not consumed: they are
    /// the client's next (pipelined) command.
    pub fn ingest(&mut self, input: &[u8]) -> (usize, Option<Outcome>) {
        let mut pos = 0;
        if self.rejected.is_none() {
            let mut probe = self.scanner;
            let (clean, problem) = probe.run(input);
            let mut iter = input[..clean].iter();
            let done = self.receiver.ingest(&mut iter, &mut self.body);
            let consumed = clean - iter.as_slice().len();
            self.remember(&input[..consumed]);
            if self.taken + self.body.len() > self.max_size {
                self.reject(Rejection::TooBig);
            }
            if done {
                let outcome = match self.rejected {
                    Some(why) => Outcome::Rejected(why),
                    None => {
                        let mut body = std::mem::take(&mut self.body);
                        // The buffer grew by doubling: without this, up to as
                        // much again as the message is held until it is stored.
                        body.shrink_to_fit();
                        Outcome::Message(body)
                    }
                };
                return (consumed, Some(outcome));
            }
            // Not done means DataReceiver took every clean byte.
            self.scanner = probe;
            pos = consumed;
            if let Some(why) = problem {
                self.reject(why);
            }
            if self.rejected.is_none() {
                return (pos, None);
            }
        }
        // Draining: end only on the exact raw sequence CR LF "." CR LF.
        for (i, &b) in input[pos..].iter().enumerate() {
            if self.tail == *b"\r\n.\r" && b == b'\n' {
                let why = self.rejected.unwrap_or(Rejection::TooBig);
                return (pos + i + 1, Some(Outcome::Rejected(why)));
            }
            self.tail = [self.tail[1], self.tail[2], self.tail[3], b];
        }
        (input.len(), None)
    }

    /// The next full piece of the message, once that much has arrived and
    /// the message is not refused (the rest stays for the next piece or
    /// the [`Outcome`]).
    pub fn take_piece(&mut self) -> Option<Vec<u8>> {
        let size = self.piece?;
        if self.rejected.is_some() || self.body.len() < size {
            return None;
        }
        // The piece in a block of its own size (it is held until stored);
        // the buffer keeps its capacity for the next one.
        let piece = self.body[..size].to_vec();
        self.body.drain(..size);
        self.taken += size;
        Some(piece)
    }

    /// Bytes taken out in pieces so far.
    pub fn taken(&self) -> usize {
        self.taken
    }

    fn reject(&mut self, why: Rejection) {
        if self.rejected.is_none() {
            self.rejected = Some(why);
        }
        self.body = Vec::new();
    }

    fn remember(&mut self, consumed: &[u8]) {
        let start = consumed.len().saturating_sub(4);
        for &b in &consumed[start..] {
            self.tail = [self.tail[1], self.tail[2], self.tail[3], b];
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes; returns outcome and bytes consumed.
    fn collect(input: &[u8], chunk: usize, max: usize) -> Option<(Outcome, usize)> {
        let mut c = Collector::new(max);
        let mut at = 0;
        while at < input.len() {
            let end = (at + chunk).min(input.len());
            let mut slice = &input[at..end];
            let mut base = at;
            loop {
                let (n, out) = c.ingest(slice);
                if let Some(out) = out {
                    return Some((out, base + n));
                }
                assert_eq!(n, slice.len());
                slice = &slice[n..];
                base += n;
                if slice.is_empty() {
                    break;
                }
            }
            at = end;
        }
        None
    }

    #[test]
    fn unstuffs_and_stops_at_final_dot() {
        for chunk in [1, 2, 3, 7, 1000] {
            let input = b"..first\r\nx\r\n..\r\n.a\r\n\r\n.\r\nQUIT\r\n";
            let (out, used) = collect(input, chunk, 1000).unwrap();
            assert_eq!(
                out,
                Outcome::Message(b".first\r\nx\r\n.\r\na\r\n\r\n".to_vec())
            );
            assert_eq!(&input[used..], b"QUIT\r\n");
        }
    }

    #[test]
    fn pieces_and_the_rest_make_the_message() {
        let mut input = Vec::new();
        for i in 0..500 {
            input.extend_from_slice(format!("..line {i}\r\n").as_bytes());
        }
        input.extend_from_slice(b".\r\nQUIT\r\n");
        for chunk in [1, 7, 100, 4096] {
            let mut c = Collector::in_pieces(1_000_000, Some(1000));
            let mut got = Vec::new();
            let mut at = 0;
            let out = loop {
                let end = (at + chunk).min(input.len());
                let (n, out) = c.ingest(&input[at..end]);
                at += n;
                while let Some(p) = c.take_piece() {
                    assert_eq!(p.len(), 1000);
                    got.extend_from_slice(&p);
                }
                if let Some(out) = out {
                    break out;
                }
            };
            let Outcome::Message(rest) = out else {
                panic!("{out:?}")
            };
            assert!(rest.len() < 1000 + chunk);
            assert_eq!(c.taken(), got.len());
            got.extend_from_slice(&rest);
            let mut expected = Vec::new();
            for i in 0..500 {
                expected.extend_from_slice(format!(".line {i}\r\n").as_bytes());
            }
            assert_eq!(got, expected, "chunk {chunk}");
            assert_eq!(&input[at..], b"QUIT\r\n");
        }
        // The size limit counts the pieces taken out.
        let mut c = Collector::in_pieces(2500, Some(1000));
        let mut outcome = None;
        for line in input.chunks(50) {
            let (_, out) = c.ingest(line);
            while c.take_piece().is_some() {}
            if out.is_some() {
                outcome = out;
                break;
            }
        }
        assert_eq!(outcome, Some(Outcome::Rejected(Rejection::TooBig)));
    }

    #[test]
    fn empty_message() {
        let (out, used) = collect(b".\r\nNOOP\r\n", 1, 10).unwrap();
        assert_eq!(out, Outcome::Message(Vec::new()));
        assert_eq!(used, 3);
    }

    #[test]
    fn smuggling_variants_do_not_end_the_message() {
        for evil in [
            &b"\n.\r\n"[..],
            b"\n.\n",
            b"\r.\r",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r\n.\r\r\n",
            b"\n.\r\r\n",
        ] {
            for chunk in [1, 2, 5, 4096] {
                let mut input = b"Subject: x\r\n\r\nhello".to_vec();
                input.extend_from_slice(evil);
                let second = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nevil\r\n.\r\n";
                input.extend_from_slice(second);
                let (out, used) = collect(&input, chunk, 10_000).unwrap();
                assert_eq!(out, Outcome::Rejected(Rejection::BareNewline), "{evil:?}");
                assert_eq!(used, input.len(), "{evil:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn too_big_is_drained_to_the_real_end() {
        let mut input = vec![b'a'; 50];
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&input.clone().repeat(5));
        input.extend_from_slice(b".\r\nNOOP\r\n");
        let (out, used) = collect(&input, 13, 100).unwrap();
        assert_eq!(out, Outcome::Rejected(Rejection::TooBig));
        assert_eq!(&input[used..], b"NOOP\r\n");
    }

    #[test]
    fn line_length_limit() {
        let ok = [vec![b'x'; 998], b"\r\n.\r\n".to_vec()].concat();
        assert!(matches!(
            collect(&ok, 64, 5000),
            Some((Outcome::Message(_), _))
        ));
        // A stuffed dot does not count (RFC 5321 §4.5.3.1.6).
        let stuffed = [b".".to_vec(), vec![b'.'; 998], b"\r\n.\r\n".to_vec()].concat();
        assert!(matches!(
            collect(&stuffed, 64, 5000),
            Some((Outcome::Message(_), _))
        ));
        let long = [vec![b'x'; 999], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(
            collect(&long, 64, 5000).unwrap().0,
            Outcome::Rejected(Rejection::LineTooLong)
        );
    }

    /// Property: over random byte soups of CR, LF, dots and letters, a message
    /// is accepted exactly when it has no bare CR/LF before the first
    /// `<CRLF>.<CRLF>` (counting the DATA line's CRLF), and it then ends there.
    #[test]
    fn random_soup_agrees_with_reference() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = [b'\r', b'\n', b'.', b'a', b'\r', b'\n'];
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            input.extend_from_slice(b"\r\n.\r\n");
            let chunk = 1 + (next() % 6) as usize;
            let (out, used) = collect(&input, chunk, 10_000).unwrap();
            // Reference: end = first CRLF.CRLF in "\r\n" + input.
            let framed = [b"\r\n".to_vec(), input.clone()].concat();
            let end = framed.windows(5).position(|w| w == b"\r\n.\r\n").unwrap() + 5;
            assert_eq!(used, end - 2, "{input:?}");
            let raw = &framed[2..end];
            let bare = raw.iter().enumerate().any(|(i, &b)| {
                let prev = if i == 0 { b'\n' } else { raw[i - 1] };
                (b == b'\n' && prev != b'\r') || (prev == b'\r' && b != b'\n')
            });
            match out {
                Outcome::Rejected(Rejection::BareNewline) => assert!(bare, "{input:?}"),
                Outcome::Message(body) => {
                    assert!(!bare, "{input:?}");
                    // Reference unstuffing: drop the first "." of each line.
                    let content = &framed[2..end - 3];
                    let mut expected = Vec::new();
                    for line in content.split_inclusive(|&b| b == b'\n') {
                        expected.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
                    }
                    assert_eq!(body, expected, "{input:?}");
                }
                other => panic!("{other:?} for {input:?}"),
            }
        }
    }
}
