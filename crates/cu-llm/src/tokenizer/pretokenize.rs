//! The `smollm` pre-tokeniser: how a text is cut into words before byte-level BPE runs on each word.
//!
//! llama.cpp (`tokenizer.ggml.pre = smollm`, the same list as StarCoder's) applies two regular
//! expressions one after the other, the second to each piece the first produced:
//!
//! 1. `\p{N}`: every numeric character (general category Nd, Nl or No) becomes a word of its own, and
//!    the runs between them become pieces (the Hugging Face tokenizer of SmolLM2 has the same step as
//!    its `Digits(individual_digits = true)` pre-tokeniser);
//! 2. GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` on each
//!    piece, where a piece's end counts as the end of the text (so `\s+(?!\S)` takes a whole run of
//!    white space that ends a piece, even when a digit follows in the next piece).
//!
//! Neither needs a regex engine: step 1 is a scan for numeric characters and step 2 is the same
//! hand-written, linear scanner llama.cpp runs for this expression (`unicode_regex_split_custom_gpt2`),
//! written here from the expression's semantics. A scanner is used rather than `fancy-regex` because
//! it is linear on every input (the backtracking engine is not, on long white-space runs), needs no
//! dependency beyond a general-category table, and states exactly the rules llama.cpp implements
//! (case-sensitive contractions; `\s` is Unicode `White_Space`).

use std::ops::Range;

// The table must be the Unicode version of llama.cpp's (15.1): a character assigned later is unassigned
// there ("other"), and a letter here would cut words differently. `unicode-general-category` 0.6.0 is
// Unicode 15.0; the one 15.1 addition that is a letter is handled in `class`. The test
// `unicode_classes_match_llama_cpp` checks every code point of planes 0 to 3 against llama.cpp.
use unicode_general_category::{GeneralCategory, get_general_category};

/// The classes of characters the expression distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// `\p{L}`: general category Lu, Ll, Lt, Lm or Lo.
    Letter,
    /// `\p{N}`: general category Nd, Nl or No.
    Number,
    /// `\s`: the Unicode `White_Space` property (tab to carriage return, space, U+0085, U+00A0,
    /// U+1680, U+2000 to U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
    Space,
    /// Everything else: marks, punctuation, symbols, controls, format and private-use characters,
    /// and unassigned code points.
    Other,
}

/// The class of one character (an ASCII fast path, then the Unicode general category).
pub(crate) fn class(c: char) -> Class {
    if c.is_ascii() {
        return if c.is_ascii_alphabetic() {
            Class::Letter
        } else if c.is_ascii_digit() {
            Class::Number
        } else if c.is_ascii_whitespace() || c == '\u{0B}' {
            // Rust's `is_ascii_whitespace` leaves out the vertical tab, which `White_Space` includes.
            Class::Space
        } else {
            Class::Other
        };
    }
    use GeneralCategory as G;
    if ('\u{2EBF0}'..='\u{2EE5D}').contains(&c) {
        // CJK Unified Ideographs Extension I (Lo), new in Unicode 15.1: llama.cpp's table is Unicode 15.1
        // and the category crate's (pinned at the last release on Unicode 15.0) predates it. Those are the
        // only letters or numbers Unicode 15.1 added.
        return Class::Letter;
    }
    match get_general_category(c) {
        G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter => {
            Class::Letter
        }
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ if c.is_whitespace() => Class::Space,
        _ => Class::Other,
    }
}

/// One character of the text being split: its byte offset, the character and its class.
#[derive(Clone, Copy)]
struct CharAt {
    at: usize,
    ch: char,
    class: Class,
}

/// Cuts `text` into the words of the `smollm` pre-tokeniser and appends their byte ranges (relative to
/// `text`, in order, covering all of it) to `out`.
pub(crate) fn split_smollm(text: &str, out: &mut Vec<Range<usize>>) {
    let chars: Vec<CharAt> = text
        .char_indices()
        .map(|(at, ch)| CharAt {
            at,
            ch,
            class: class(ch),
        })
        .collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |c| c.at);
    // Step 1: each numeric character alone; GPT-2's expression on the runs between them.
    let mut start = 0;
    for (i, c) in chars.iter().enumerate() {
        if c.class == Class::Number {
            if start < i {
                gpt2(&chars[start..i], end_of(i), out);
            }
            out.push(c.at..end_of(i + 1));
            start = i + 1;
        }
    }
    if start < chars.len() {
        gpt2(&chars[start..], text.len(), out);
    }
}

/// GPT-2's expression on one piece (`cs`, whose last character ends at byte `end`), as a linear scan.
fn gpt2(cs: &[CharAt], end: usize, out: &mut Vec<Range<usize>>) {
    let n = cs.len();
    let byte = |i: usize| cs.get(i).map_or(end, |c| c.at);
    // The class at `i`, or `None` past the piece's end (which every rule treats as "no character").
    let class_at = |i: usize| cs.get(i).map(|c| c.class);
    let mut pos = 0;
    while pos < n {
        let start = pos;
        let c = cs[pos].ch;
        // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive, as in GPT-2).
        if c == '\'' && pos + 1 < n {
            let c1 = cs[pos + 1].ch;
            if matches!(c1, 's' | 't' | 'm' | 'd') {
                pos += 2;
                out.push(byte(start)..byte(pos));
                continue;
            }
            if pos + 2 < n && matches!((c1, cs[pos + 2].ch), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                pos += 3;
                out.push(byte(start)..byte(pos));
                continue;
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
        let run = if c == ' ' {
            class_at(pos + 1)
        } else {
            Some(cs[pos].class)
        };
        if let Some(run @ (Class::Letter | Class::Number | Class::Other)) = run {
            if c == ' ' {
                pos += 1;
            }
            while class_at(pos) == Some(run) {
                pos += 1;
            }
            out.push(byte(start)..byte(pos));
            continue;
        }
        let mut spaces = 0;
        while class_at(pos + spaces) == Some(Class::Space) {
            spaces += 1;
        }
        if spaces > 1 && pos + spaces < n {
            // `\s+(?!\S)` before a non-space: all but the last space (which may start the next word).
            pos += spaces - 1;
        } else if spaces > 0 {
            // `\s+(?!\S)` at the piece's end, or `\s+` for a single space before a non-space.
            pos += spaces;
        } else {
            // Unreachable (every character has a class), kept so that the scan always advances.
            pos += 1;
        }
        out.push(byte(start)..byte(pos));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split_smollm(text, &mut out);
        out.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn splits_like_the_expression() {
        assert_eq!(words("Hello world"), ["Hello", " world"]);
        assert_eq!(words("12345 abc"), ["1", "2", "3", "4", "5", " abc"]);
        assert_eq!(words(" \n\n  x  "), [" \n\n ", " x", "  "]);
        assert_eq!(words("don't DON'T"), ["don", "'t", " DON", "'", "T"]);
        assert_eq!(words("a   1"), ["a", "   ", "1"]);
        assert_eq!(words("x !!  ?"), ["x", " !!", " ", " ?"]);
        assert_eq!(words("\t\tword"), ["\t", "\t", "word"]);
        assert_eq!(words(""), Vec::<&str>::new());
        assert_eq!(words("日本語 😀"), ["日本語", " 😀"]);
    }
}
