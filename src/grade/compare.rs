//! The Kattis default output validator, reimplemented: is a submission's output an acceptable
//! answer?
//!
//! This follows the problem package format's "default output validator specification" (and the
//! reference implementation in Kattis problemtools, `default_validator.cc`) exactly:
//!
//! - Both files are read as single-byte characters and split into tokens on runs of whitespace:
//!   space, form feed, line feed, carriage return, horizontal tab, vertical tab. The amount and
//!   kind of whitespace is ignored, including leading and trailing whitespace; the number of
//!   tokens must agree.
//! - Tokens compare **case-insensitively** by default (ASCII `A`–`Z` equal `a`–`z`); with
//!   `case_sensitive` they must be identical byte for byte.
//! - `space_change_sensitive`: every whitespace sequence (leading and trailing too) must match the
//!   answer's in type and amount.
//! - `float_absolute_tolerance ε`, `float_relative_tolerance ε`, `float_tolerance ε` (both): each
//!   answer token that is a number as the reference reads it ([`super::number`]: C's
//!   `sscanf("%lf")` grammar, so `0x1.8p3`, `1e` and `.5` are numbers, `inf`, `nan` and `1.5abc`
//!   are not) is compared numerically. The output token must be a number too; it is accepted
//!   when `|s-a| ≤ ε` (absolute) or `|s-a| ≤ ε|a|` (relative), either one sufficing when both are
//!   set, exactly as the reference combines them. Answer tokens that are not numbers compare as
//!   strings. Tolerance values are read with the same grammar (and must not be negative).
//!
//! The answer file is streamed ([`compare_stream`]), never read whole: the output is capped, the
//! answer is not, so memory is bounded by the output and one answer token
//! ([`ANSWER_TOKEN_BYTES`]). The one deviation from the reference that follows is documented
//! there.
//!
//! This module is pure: a reader and bytes in, a verdict out; it opens no files. Whether a
//! mismatch may be shown in full (samples, `full_feedback`) or only by position (secret cases) is
//! decided by the caller through [`Mismatch::describe`].

use std::fmt;
use std::io::{self, BufRead};

use thiserror::Error;

use super::number::parse_float;

/// The validator arguments in effect for one case (`output_validator_args`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompareOptions {
    pub case_sensitive: bool,
    pub space_change_sensitive: bool,
    pub float_absolute_tolerance: Option<f64>,
    pub float_relative_tolerance: Option<f64>,
}

impl CompareOptions {
    fn uses_floats(&self) -> bool {
        self.float_absolute_tolerance.is_some() || self.float_relative_tolerance.is_some()
    }
}

/// Why a list of validator arguments is refused. Reported as a malformed suite.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FlagError {
    #[error(
        "unknown output validator argument `{0}`: the default validator takes case_sensitive, \
         space_change_sensitive, float_tolerance ε, float_relative_tolerance ε, float_absolute_tolerance ε \
         (custom validators are not supported)"
    )]
    Unknown(String),
    #[error("`{flag}` needs a number after it (e.g. `{flag} 1e-6`)")]
    MissingValue { flag: String },
    #[error("`{flag} {value}`: the tolerance must be a non-negative number (e.g. 1e-6)")]
    BadValue { flag: String, value: String },
    #[error("`{0}` is given twice: give each argument once")]
    Repeated(String),
    #[error("`float_tolerance` cannot be combined with `float_relative_tolerance` or `float_absolute_tolerance`: use either the short-hand or the two separate ones")]
    Conflicting,
}

/// Parse `output_validator_args` (e.g. `["float_tolerance", "1e-6", "case_sensitive"]`).
pub fn parse_flags<S: AsRef<str>>(args: &[S]) -> Result<CompareOptions, FlagError> {
    let mut options = CompareOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut args = args.iter().map(AsRef::as_ref);
    while let Some(flag) = args.next() {
        let name = match flag {
            "case_sensitive" => {
                options.case_sensitive = true;
                "case_sensitive"
            }
            "space_change_sensitive" => {
                options.space_change_sensitive = true;
                "space_change_sensitive"
            }
            "float_tolerance" | "float_relative_tolerance" | "float_absolute_tolerance" => {
                let value = args.next().ok_or_else(|| FlagError::MissingValue {
                    flag: flag.to_owned(),
                })?;
                let tolerance = parse_float(value.as_bytes())
                    .filter(|tolerance| *tolerance >= 0.0)
                    .ok_or_else(|| FlagError::BadValue {
                        flag: flag.to_owned(),
                        value: value.to_owned(),
                    })?;
                if flag != "float_absolute_tolerance" {
                    options.float_relative_tolerance = Some(tolerance);
                }
                if flag != "float_relative_tolerance" {
                    options.float_absolute_tolerance = Some(tolerance);
                }
                flag
            }
            other => return Err(FlagError::Unknown(other.to_owned())),
        };
        if seen.contains(&name) {
            return Err(FlagError::Repeated(name.to_owned()));
        }
        seen.push(name);
    }
    if seen.contains(&"float_tolerance")
        && (seen.contains(&"float_relative_tolerance")
            || seen.contains(&"float_absolute_tolerance"))
    {
        return Err(FlagError::Conflicting);
    }
    Ok(options)
}

/// Where and how the output first disagreed with the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// 1-based line of the submission's output where the difference was found.
    pub output_line: usize,
    /// 1-based line of the answer file at the same point.
    pub answer_line: usize,
    pub kind: MismatchKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MismatchKind {
    /// `space_change_sensitive`: a whitespace character differs (`None`: end of file).
    SpaceChange {
        expected: Option<u8>,
        got: Option<u8>,
    },
    /// Two string tokens differ.
    Token { expected: Vec<u8>, got: Vec<u8> },
    /// The answer has a float here; the output token is not one.
    NotAFloat { expected: Vec<u8>, got: Vec<u8> },
    /// Both are floats, too far apart.
    FloatDifference {
        expected: Vec<u8>,
        got: Vec<u8>,
        difference: f64,
    },
    /// The output ended while the answer has more tokens.
    OutputEnded {
        output_was_empty: bool,
        expected: Vec<u8>,
    },
    /// The output has tokens after the answer's last one.
    TrailingOutput { got: Vec<u8> },
}

impl Mismatch {
    /// A one-line description. With `reveal` false nothing of the expected answer is shown (not a
    /// token, not a count): only where in the submission's own output it went wrong.
    pub fn describe(&self, reveal: bool) -> String {
        if !reveal {
            return match self.kind {
                MismatchKind::OutputEnded { .. } => {
                    format!(
                        "wrong answer: the output is incomplete (it ends on line {})",
                        self.output_line
                    )
                }
                _ => format!("wrong answer on line {} of the output", self.output_line),
            };
        }
        let at = format!(
            "line {} of the output (line {} of the answer)",
            self.output_line, self.answer_line
        );
        match &self.kind {
            MismatchKind::SpaceChange { expected, got } => format!(
                "wrong answer on {at}: whitespace differs: expected {}, got {}",
                show_space(*expected),
                show_space(*got)
            ),
            MismatchKind::Token { expected, got } => format!(
                "wrong answer on {at}: expected {}, got {}",
                Token(expected),
                Token(got)
            ),
            MismatchKind::NotAFloat { expected, got } => format!(
                "wrong answer on {at}: expected the number {}, got {}, which is not a number",
                Token(expected),
                Token(got)
            ),
            MismatchKind::FloatDifference {
                expected,
                got,
                difference,
            } => format!(
                "wrong answer on {at}: expected {}, got {}: difference {difference:e} is more than the tolerance",
                Token(expected),
                Token(got)
            ),
            MismatchKind::OutputEnded {
                output_was_empty,
                expected,
            } => format!(
                "wrong answer on {at}: the output {} but the answer continues with {}",
                if *output_was_empty { "is empty" } else { "ended" },
                Token(expected)
            ),
            MismatchKind::TrailingOutput { got } => {
                format!("wrong answer on {at}: unexpected output after the answer's end: {}", Token(got))
            }
        }
    }
}

/// A token for a message: lossy UTF-8, escaped, shortened.
struct Token<'a>(&'a [u8]);

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 40;
        let text = String::from_utf8_lossy(self.0);
        let shown: String = text.chars().take(MAX).collect();
        let escaped: String = shown.chars().flat_map(char::escape_debug).collect();
        if text.chars().count() > MAX {
            write!(f, "`{escaped}…`")
        } else {
            write!(f, "`{escaped}`")
        }
    }
}

fn show_space(byte: Option<u8>) -> String {
    match byte {
        None => "end of output".to_owned(),
        Some(b' ') => "a space".to_owned(),
        Some(b'\n') => "a newline".to_owned(),
        Some(b'\t') => "a tab".to_owned(),
        Some(b'\r') => "a carriage return".to_owned(),
        Some(other) if is_space(other) => format!("whitespace byte 0x{other:02x}"),
        Some(other) => format!("`{}`", char::from(other).escape_debug()),
    }
}

/// The whitespace of the spec: space, form feed, line feed, carriage return, tab, vertical tab.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | 0x0c | b'\n' | b'\r' | b'\t' | 0x0b)
}

/// Longest answer token held in memory while comparing, unless the output's token at the same
/// place is longer (then as long as that one).
///
/// The output is capped (`--max-output`, 1 MiB by default) and already in memory; the answer file
/// is not bounded by anything, so it is streamed and never read whole. A token of the answer
/// longer than both this and the output's token cannot be equal to it (not even ignoring case,
/// which keeps lengths), so the comparison stops there with a wrong answer, without reading the
/// rest of the token. Such a token is also never taken as a number: unlike the reference
/// implementation, an answer token of more than 64 KiB of digits is compared as a string.
pub const ANSWER_TOKEN_BYTES: usize = 64 * 1024;

/// Bytes of an answer token kept for a message (messages show at most 40 characters of it).
const MESSAGE_TOKEN_BYTES: usize = 256;

/// Compare the submission's `output` with the `answer` file under `options`.
pub fn compare(answer: &[u8], output: &[u8], options: &CompareOptions) -> Result<(), Mismatch> {
    compare_stream(answer, output, options).expect("reading from memory cannot fail")
}

/// [`compare`] with the answer read from a stream (the `.ans` file), in bounded memory: at most
/// one token of the answer is held at a time (see [`ANSWER_TOKEN_BYTES`]), and reading stops at
/// the first difference. `Err` only when reading the answer fails.
pub fn compare_stream(
    answer: impl BufRead,
    output: &[u8],
    options: &CompareOptions,
) -> io::Result<Result<(), Mismatch>> {
    let mut cursor = Cursor {
        answer,
        output,
        o: 0,
        answer_line: 1,
        output_line: 1,
    };
    match cursor.compare(options) {
        Ok(()) => Ok(Ok(())),
        Err(Stop::Mismatch(mismatch)) => Ok(Err(mismatch)),
        Err(Stop::Unreadable(error)) => Err(error),
    }
}

/// Why a comparison stopped before the end.
enum Stop {
    Mismatch(Mismatch),
    Unreadable(io::Error),
}

impl From<io::Error> for Stop {
    fn from(error: io::Error) -> Stop {
        Stop::Unreadable(error)
    }
}

fn compare_tokens(
    expected: &[u8],
    longer: bool,
    got: &[u8],
    options: &CompareOptions,
) -> Option<MismatchKind> {
    // `longer`: the answer's token goes on past `expected`, which is already longer than `got`.
    if options.uses_floats() && !longer {
        if let Some(a) = parse_float(expected) {
            let Some(s) = parse_float(got) else {
                return Some(MismatchKind::NotAFloat {
                    expected: expected.to_vec(),
                    got: got.to_vec(),
                });
            };
            let difference = (a - s).abs();
            let absolute_ok = options
                .float_absolute_tolerance
                .is_some_and(|epsilon| difference <= epsilon);
            let relative_ok = options
                .float_relative_tolerance
                .is_some_and(|epsilon| difference <= epsilon * a.abs());
            return (!absolute_ok && !relative_ok).then(|| MismatchKind::FloatDifference {
                expected: expected.to_vec(),
                got: got.to_vec(),
                difference,
            });
        }
    }
    let equal = !longer
        && if options.case_sensitive {
            expected == got
        } else {
            expected.eq_ignore_ascii_case(got)
        };
    (!equal).then(|| MismatchKind::Token {
        expected: expected.to_vec(),
        got: got.to_vec(),
    })
}

/// The answer's buffered bytes, retrying reads interrupted by a signal; empty at the end.
fn fill<R: BufRead>(reader: &mut R) -> io::Result<&[u8]> {
    loop {
        match reader.fill_buf() {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
            Ok(_) => break,
        }
    }
    // Already buffered (or at the end): this does not read again.
    reader.fill_buf()
}

/// Where the comparison is: the answer is a stream positioned at its next unread byte; the output
/// is in memory, at `o`.
struct Cursor<'a, R> {
    answer: R,
    output: &'a [u8],
    o: usize,
    answer_line: usize,
    output_line: usize,
}

impl<'a, R: BufRead> Cursor<'a, R> {
    fn compare(&mut self, options: &CompareOptions) -> Result<(), Stop> {
        let mut tokens = 0usize;
        // One buffer for every answer token: answers can hold millions of them.
        let mut expected = Vec::new();
        loop {
            self.skip_answer_space(options.space_change_sensitive)?;
            self.skip_output_space(options.space_change_sensitive)?;
            if fill(&mut self.answer)?.is_empty() {
                break;
            }
            let Some(got) = self.output_token() else {
                self.answer_token(&mut expected, MESSAGE_TOKEN_BYTES)?;
                return Err(self.mismatch(MismatchKind::OutputEnded {
                    output_was_empty: tokens == 0 && self.o == 0,
                    expected,
                }));
            };
            let longer = self.answer_token(&mut expected, got.len().max(ANSWER_TOKEN_BYTES))?;
            if let Some(kind) = compare_tokens(&expected, longer, got, options) {
                return Err(self.mismatch(kind));
            }
            tokens += 1;
            self.o += got.len();
        }
        match self.output_token() {
            Some(got) => Err(self.mismatch(MismatchKind::TrailingOutput { got: got.to_vec() })),
            None => Ok(()),
        }
    }

    fn mismatch(&self, kind: MismatchKind) -> Stop {
        Stop::Mismatch(Mismatch {
            output_line: self.output_line,
            answer_line: self.answer_line,
            kind,
        })
    }

    /// Skip the answer's whitespace; when space-sensitive the output must have the same bytes.
    fn skip_answer_space(&mut self, sensitive: bool) -> Result<(), Stop> {
        loop {
            let buffer = fill(&mut self.answer)?;
            // One pass over the buffer: answers can be mostly whitespace, and large.
            let mut spaces = 0;
            let mut newlines = 0;
            for &expected in buffer {
                if !is_space(expected) {
                    break;
                }
                if sensitive {
                    let got = self.output.get(self.o).copied();
                    if got != Some(expected) {
                        self.answer_line += newlines;
                        return Err(self.mismatch(MismatchKind::SpaceChange {
                            expected: Some(expected),
                            got,
                        }));
                    }
                    if expected == b'\n' {
                        self.output_line += 1;
                    }
                    self.o += 1;
                }
                if expected == b'\n' {
                    newlines += 1;
                }
                spaces += 1;
            }
            self.answer_line += newlines;
            let done = spaces < buffer.len() || buffer.is_empty();
            self.answer.consume(spaces);
            if done {
                return Ok(());
            }
        }
    }

    /// Skip the output's whitespace; when space-sensitive there must be none left to skip.
    fn skip_output_space(&mut self, sensitive: bool) -> Result<(), Stop> {
        while let Some(&got) = self.output.get(self.o).filter(|byte| is_space(**byte)) {
            if sensitive {
                let expected = fill(&mut self.answer)?.first().copied();
                return Err(self.mismatch(MismatchKind::SpaceChange {
                    expected,
                    got: Some(got),
                }));
            }
            if got == b'\n' {
                self.output_line += 1;
            }
            self.o += 1;
        }
        Ok(())
    }

    /// Read the answer's next token (its whitespace was skipped already) into `token` (cleared
    /// first, its allocation reused), keeping at most `limit` bytes of it; `true` when the token
    /// is longer than that (the rest is left unread).
    fn answer_token(&mut self, token: &mut Vec<u8>, limit: usize) -> Result<bool, Stop> {
        token.clear();
        loop {
            let buffer = fill(&mut self.answer)?;
            let length = buffer.iter().take_while(|byte| !is_space(**byte)).count();
            let room = limit - token.len();
            if length > room {
                token.extend_from_slice(&buffer[..room]);
                return Ok(true);
            }
            token.extend_from_slice(&buffer[..length]);
            let done = length < buffer.len() || buffer.is_empty();
            self.answer.consume(length);
            if done {
                return Ok(false);
            }
        }
    }

    /// The output's next token; its whitespace was skipped already.
    fn output_token(&self) -> Option<&'a [u8]> {
        let output: &'a [u8] = self.output;
        let rest = output.get(self.o..)?;
        let len = rest.iter().take_while(|byte| !is_space(**byte)).count();
        (len > 0).then(|| &rest[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> CompareOptions {
        parse_flags(args).unwrap()
    }

    fn ok(answer: &str, output: &str, args: &[&str]) -> bool {
        compare(answer.as_bytes(), output.as_bytes(), &flags(args)).is_ok()
    }

    #[test]
    fn whitespace_is_only_a_separator_by_default() {
        assert!(ok("1 2\n3\n", "1 2\n3\n", &[]));
        assert!(ok("1 2\n3\n", "  1\t\t2 3", &[]));
        assert!(ok("1 2\n3\n", "1\r\n2\r\n3\r\n\n\n", &[]));
        assert!(ok("A B", " A  B \t\n", &[]));
        assert!(ok("", "", &[]));
        assert!(ok("", " \n\t", &[]));
        assert!(ok("x\x0b\x0cy", "x y", &[]));
        assert!(!ok("1 2", "12", &[]));
        assert!(!ok("A B", "A B X", &[]));
        assert!(!ok("A B", "X A B", &[]));
        assert!(!ok("A B", "A", &[]));
        assert!(!ok("", "0", &[]));
        assert!(!ok("A B", "A B\n\n\n X", &[]));
    }

    #[test]
    fn tokens_are_case_insensitive_unless_case_sensitive() {
        assert!(ok("Yes", "YES", &[]));
        assert!(ok("Hello World", "hello world", &[]));
        assert!(!ok("Yes", "YES", &["case_sensitive"]));
        assert!(ok("Yes", "Yes", &["case_sensitive"]));
        // Only ASCII letters fold: these are different bytes.
        assert!(!ok("É", "é", &[]));
        assert!(ok("é", "é", &[]));
    }

    #[test]
    fn space_change_sensitive_requires_identical_whitespace() {
        let strict = ["space_change_sensitive"];
        assert!(ok("1 2\n", "1 2\n", &strict));
        assert!(!ok("1 2\n", "1  2\n", &strict));
        assert!(!ok("1 2\n", "1\t2\n", &strict));
        assert!(!ok("1 2\n", "1 2", &strict), "missing trailing newline");
        assert!(!ok("1 2\n", "1 2\n\n", &strict), "extra trailing newline");
        assert!(!ok("1 2\n", " 1 2\n", &strict), "leading space");
        assert!(!ok("1 2\n", "1 2\r\n", &strict));
        assert!(ok("", "", &strict));
        assert!(!ok("", " ", &strict));
        // Case still folds unless asked.
        assert!(ok("a b\n", "A B\n", &strict));
        let error = compare(b"1 2\n", b"1  2\n", &flags(&strict)).unwrap_err();
        assert!(matches!(
            error.kind,
            MismatchKind::SpaceChange {
                expected: None | Some(b'2'),
                got: Some(b' ')
            }
        ));
    }

    #[test]
    fn absolute_tolerance() {
        let abs = ["float_absolute_tolerance", "0.01"];
        assert!(ok("1.000", "1.009", &abs));
        assert!(ok("1.000", "0.991", &abs));
        assert!(!ok("1.000", "1.02", &abs));
        assert!(ok("1000", "1000.005", &abs));
        assert!(!ok("1e6", "1000000.5", &abs));
        // Integers are floats too once a tolerance is set.
        assert!(ok("3", "3.0", &abs));
        assert!(ok("3", "+3e0", &abs));
        assert!(!ok("3", "three", &abs));
    }

    #[test]
    fn relative_tolerance() {
        let rel = ["float_relative_tolerance", "1e-3"];
        assert!(ok("1000", "1000.9", &rel));
        assert!(!ok("1000", "1001.1", &rel));
        assert!(ok("0.001", "0.0010009", &rel));
        assert!(
            !ok("0", "1e-300", &rel),
            "relative tolerance of zero is zero"
        );
        assert!(ok("0", "0.0", &rel));
    }

    #[test]
    fn float_tolerance_is_either_of_both() {
        let both = ["float_tolerance", "1e-6"];
        assert!(ok("0", "1e-7", &both), "within absolute");
        assert!(ok("1e9", "1000000500", &both), "within relative");
        assert!(!ok("1e9", "1000002000", &both));
        assert!(!ok("0", "1e-5", &both));
        assert_eq!(
            flags(&both),
            CompareOptions {
                float_absolute_tolerance: Some(1e-6),
                float_relative_tolerance: Some(1e-6),
                ..CompareOptions::default()
            }
        );
    }

    #[test]
    fn floats_are_strings_without_a_tolerance_and_non_floats_stay_strings() {
        assert!(!ok("1.0", "1.00", &[]));
        assert!(ok("1.0", "1.0", &[]));
        let abs = ["float_absolute_tolerance", "0.5"];
        assert!(ok("abc 1", "ABC 1.2", &abs));
        assert!(!ok("abc", "abd", &abs));
        // Without a tolerance a hexadecimal float is a string like any other.
        assert!(!ok("0x10", "16", &[]));
        // Too large for a double: not a float, compared as a string.
        assert!(ok("1e999", "1E999", &abs));
        assert!(!ok("1e999", "1e998", &abs));
        let error = compare(b"2.5", b"nan", &flags(&abs)).unwrap_err();
        assert!(matches!(error.kind, MismatchKind::NotAFloat { .. }));
        let error = compare(b"2.5", b"inf", &flags(&abs)).unwrap_err();
        assert!(matches!(error.kind, MismatchKind::NotAFloat { .. }));
    }

    /// The three kinds of token the reference reads differently from the package format's
    /// stricter grammar: hexadecimal floats, an exponent letter without digits, and a token that
    /// only starts with a number. (The grammar itself is tested in `number`.)
    #[test]
    fn numbers_are_read_as_the_reference_reads_them() {
        let abs = ["float_absolute_tolerance", "1e-9"];
        assert!(ok("0x10", "16", &abs), "hex answer, decimal output");
        assert!(ok("12", "0x1.8p3", &abs), "decimal answer, hex output");
        assert!(
            ok("2", "2e", &abs),
            "an exponent letter without digits is dropped"
        );
        assert!(ok("2e+", "2.0", &abs));
        let error = compare(b"2", b"2.0abc", &flags(&abs)).unwrap_err();
        assert!(
            matches!(error.kind, MismatchKind::NotAFloat { .. }),
            "only a prefix is a number: {error:?}"
        );
        // An answer token that only starts with a number is a string.
        assert!(ok("1.5abc", "1.5ABC", &abs));
        assert!(!ok("1.5abc", "1.50abc", &abs));
        // Tolerances are read the same way.
        assert_eq!(
            flags(&["float_absolute_tolerance", "0x1p-3"]).float_absolute_tolerance,
            Some(0.125)
        );
    }

    /// Absolute and relative tolerance combine as in the reference: either suffices, and an
    /// unset one never does (the reference's -1).
    #[test]
    fn tolerances_combine_as_in_the_reference() {
        let both = [
            "float_absolute_tolerance",
            "1",
            "float_relative_tolerance",
            "0.1",
        ];
        assert!(ok("100", "109", &both), "relative only");
        assert!(ok("0", "1", &both), "absolute only");
        assert!(!ok("100", "111", &both), "neither");
        let rel = ["float_relative_tolerance", "0"];
        assert!(
            ok("5", "5.0", &rel),
            "a zero tolerance still accepts equality"
        );
        assert!(!ok("5", "5.000001", &rel));
        // A difference that overflows is infinite: within an infinite relative tolerance only,
        // as in the reference (`inf <= inf`).
        assert!(ok("1.7e308", "-1.7e308", &["float_tolerance", "1e308"]));
        assert!(!ok(
            "1.7e308",
            "-1.7e308",
            &["float_absolute_tolerance", "1e308"]
        ));
    }

    #[test]
    fn flags_are_validated() {
        assert_eq!(parse_flags::<&str>(&[]), Ok(CompareOptions::default()));
        assert!(flags(&["case_sensitive", "space_change_sensitive"]).case_sensitive);
        assert_eq!(
            parse_flags(&["ignore_case"]),
            Err(FlagError::Unknown("ignore_case".into()))
        );
        assert!(matches!(
            parse_flags(&["float_tolerance"]),
            Err(FlagError::MissingValue { .. })
        ));
        assert!(matches!(
            parse_flags(&["float_tolerance", "x"]),
            Err(FlagError::BadValue { .. })
        ));
        assert!(matches!(
            parse_flags(&["float_tolerance", "-1"]),
            Err(FlagError::BadValue { .. })
        ));
        assert_eq!(
            parse_flags(&["case_sensitive", "case_sensitive"]),
            Err(FlagError::Repeated("case_sensitive".into()))
        );
        assert_eq!(
            parse_flags(&["float_tolerance", "1", "float_absolute_tolerance", "1"]),
            Err(FlagError::Conflicting)
        );
        let both = flags(&[
            "float_absolute_tolerance",
            "1",
            "float_relative_tolerance",
            "2",
        ]);
        assert_eq!(both.float_absolute_tolerance, Some(1.0));
        assert_eq!(both.float_relative_tolerance, Some(2.0));
    }

    #[test]
    fn mismatches_are_located_by_line() {
        let error = compare(b"a\nb\nc\n", b"a\nb\nx\n", &flags(&[])).unwrap_err();
        assert_eq!((error.output_line, error.answer_line), (3, 3));
        assert!(matches!(error.kind, MismatchKind::Token { .. }));
        let error = compare(b"a b c", b"a\n\nb\nx", &flags(&[])).unwrap_err();
        assert_eq!((error.output_line, error.answer_line), (4, 1));
        let error = compare(b"1\n2\n", b"1\n", &flags(&[])).unwrap_err();
        assert!(matches!(
            error.kind,
            MismatchKind::OutputEnded {
                output_was_empty: false,
                ..
            }
        ));
        let error = compare(b"1\n", b"", &flags(&[])).unwrap_err();
        assert!(matches!(
            error.kind,
            MismatchKind::OutputEnded {
                output_was_empty: true,
                ..
            }
        ));
        let error = compare(b"1\n", b"1\n2\n", &flags(&[])).unwrap_err();
        assert_eq!(
            error.kind,
            MismatchKind::TrailingOutput { got: b"2".to_vec() }
        );
        assert_eq!(error.output_line, 2);
    }

    #[test]
    fn redacted_descriptions_reveal_nothing_of_the_answer() {
        let cases: [(&[u8], &[u8], &[&str]); 5] = [
            (b"SECRET42", b"guess", &[]),
            (b"SECRET42 more", b"SECRET42", &[]),
            (b"1.5", b"SECRET", &["float_tolerance", "0.1"]),
            (b"SECRET\n", b"SECRET \n", &["space_change_sensitive"]),
            (b"x", b"x SECRET", &[]),
        ];
        for (answer, output, args) in cases {
            let error = compare(answer, output, &flags(args)).unwrap_err();
            let full = error.describe(true);
            let redacted = error.describe(false);
            assert!(redacted.starts_with("wrong answer"), "{redacted}");
            assert!(
                !redacted.contains("SECRET")
                    && !redacted.contains("more")
                    && !redacted.contains("1.5")
            );
            assert!(full.contains("line"), "{full}");
        }
        let error = compare(b"SECRET42", b"guess", &flags(&[])).unwrap_err();
        assert!(error.describe(true).contains("`SECRET42`"));
    }

    /// The answer through a reader that hands out at most `chunk` bytes per read.
    fn streamed(
        answer: &[u8],
        output: &[u8],
        options: &CompareOptions,
        chunk: usize,
    ) -> Result<(), Mismatch> {
        let reader = std::io::BufReader::with_capacity(chunk, answer);
        compare_stream(reader, output, options).unwrap()
    }

    #[test]
    fn streaming_gives_the_same_result_whatever_the_read_size() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("1 2\n3\n", "  1\t\t2 3", &[]),
            ("1 2\n3\n", "1 2\nx\n", &[]),
            ("a\nb\nc\n", "a\nb\n", &[]),
            ("a\n", "a\nb\n", &[]),
            ("Yes", "YES", &["case_sensitive"]),
            ("1 2\n", "1  2\n", &["space_change_sensitive"]),
            ("1 2\n\n3", "1 2\n\n3", &["space_change_sensitive"]),
            ("1 2\n\n3", "1 2\n3", &["space_change_sensitive"]),
            ("1 2\n", "1 2", &["space_change_sensitive"]),
            (
                "3.14159 x",
                "3.1416 X",
                &["float_absolute_tolerance", "1e-3"],
            ),
            ("3.14159", "3.2", &["float_absolute_tolerance", "1e-3"]),
            ("longtoken", "longtoke", &[]),
            ("longtoke", "longtoken", &[]),
            ("", "", &[]),
            ("  \n ", "", &[]),
        ];
        for (answer, output, args) in cases {
            let options = flags(args);
            let whole = compare(answer.as_bytes(), output.as_bytes(), &options);
            for chunk in [1, 2, 3, 7] {
                assert_eq!(
                    streamed(answer.as_bytes(), output.as_bytes(), &options, chunk),
                    whole,
                    "{answer:?} vs {output:?} {args:?}, read {chunk} at a time"
                );
            }
        }
    }

    /// `prefix`, then `len` bytes of `fill`, produced as they are read (never all in memory); counts
    /// what was read.
    struct Generated {
        prefix: Vec<u8>,
        fill: u8,
        len: u64,
        read: u64,
    }

    impl std::io::Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if !self.prefix.is_empty() {
                let n = self.prefix.len().min(buf.len());
                buf[..n].copy_from_slice(&self.prefix[..n]);
                self.prefix.drain(..n);
                return Ok(n);
            }
            let n = usize::try_from(self.len.min(buf.len() as u64)).unwrap();
            buf[..n].fill(self.fill);
            self.len -= n as u64;
            self.read += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_huge_answer_is_streamed_not_loaded() {
        // 64 MiB of newlines after the only token: accepted, and read to the end.
        let mut answer = std::io::BufReader::new(Generated {
            prefix: b"7".to_vec(),
            fill: b'\n',
            len: 64 << 20,
            read: 0,
        });
        assert_eq!(
            compare_stream(&mut answer, b"7\n", &flags(&[])).unwrap(),
            Ok(())
        );
        assert_eq!(answer.get_ref().read, 64 << 20);
        // An endless token: the comparison stops once it is longer than the output's token.
        let mut endless = std::io::BufReader::new(Generated {
            prefix: Vec::new(),
            fill: b'x',
            len: u64::MAX,
            read: 0,
        });
        let error = compare_stream(&mut endless, b"xxx", &flags(&[]))
            .unwrap()
            .unwrap_err();
        assert!(matches!(error.kind, MismatchKind::Token { .. }));
        assert!(
            error.describe(true).contains('…'),
            "{}",
            error.describe(true)
        );
        assert!(endless.get_ref().read < (ANSWER_TOKEN_BYTES as u64) * 2);
        // The same in a float comparison: an endless number is not read to its end.
        let mut digits = std::io::BufReader::new(Generated {
            prefix: b"1.".to_vec(),
            fill: b'0',
            len: u64::MAX,
            read: 0,
        });
        let floats = flags(&["float_tolerance", "1e-6"]);
        assert!(compare_stream(&mut digits, b"1", &floats).unwrap().is_err());
        assert!(digits.get_ref().read < (ANSWER_TOKEN_BYTES as u64) * 2);
    }

    #[test]
    fn long_tokens_compare_in_full() {
        let long = "ab".repeat(ANSWER_TOKEN_BYTES);
        assert!(ok(&long, &long.to_uppercase(), &[]));
        assert!(!ok(&long, &long[1..], &[]));
        assert!(!ok(&long[1..], &long, &[]));
        assert!(!ok(&format!("{long}c"), &format!("{long}d"), &[]));
        // A number too long to be held is compared as a string (see ANSWER_TOKEN_BYTES).
        let number = format!("1.{}", "0".repeat(ANSWER_TOKEN_BYTES));
        let tolerance = ["float_absolute_tolerance", "0.5"];
        assert!(!ok(&number, "1", &tolerance));
        assert!(ok(&number[..ANSWER_TOKEN_BYTES], "1", &tolerance));
    }

    #[test]
    fn an_unreadable_answer_is_an_error_not_a_verdict() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let answer = std::io::BufReader::new(std::io::Read::chain(&b"1 2 "[..], Failing));
        let error = compare_stream(answer, b"1 2 3", &flags(&[])).unwrap_err();
        assert_eq!(error.to_string(), "disk on fire");
    }

    #[test]
    fn tokens_in_messages_are_escaped_and_shortened() {
        let long = "y".repeat(100);
        let error = compare(b"x", format!("{long}\u{1b}").as_bytes(), &flags(&[])).unwrap_err();
        let message = error.describe(true);
        assert!(message.contains('…'));
        assert!(!message.contains('\u{1b}'));
        let error = compare(b"x", b"\xff\x07", &flags(&[])).unwrap_err();
        assert!(error.describe(true).contains("\\u{7}"));
    }
}
