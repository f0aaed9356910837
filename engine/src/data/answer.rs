//! The one verdict: whether a completion's answer is the reference's.
//!
//! Every place that judges an answer asks [`judge`]: the `accuracy` reward of GRPO runs, every
//! evaluation (a run's `eval/accuracy`, `studio eval`, the traces' `correct`) and `studio
//! rewards`. Its rules:
//!
//! - **Extraction** ([`extract`]), the first that applies: the content of the last
//!   `<answer>…</answer>` (an unclosed tag takes the rest of the text), else the content of the
//!   last `\boxed{…}` (braces matched), else the first line of text after the last `####`, else
//!   the last number in the text, else the whole text.
//! - **Numbers compare by value, exactly** ([`answers_equal`]): `42` = `42.0` = `+42` = `42.`;
//!   `1,000` = `1000` (commas only as thousands separators); `−3` (U+2212) = `-3`; fractions
//!   `a/b` and `\frac{a}{b}` by value (`1/2` = `0.5`, `-1/2` = `-0.5`), with no rounding
//!   (`1/3` ≠ `0.333`); `$12` = `12` and `50%` = `50`. Values are exact rationals, never floats;
//!   a number too long for them (more than 36 digits) compares as written.
//! - **Anything else compares as text**: trimmed, case-insensitive, inner whitespace collapsed
//!   (`Paris` = ` paris `, `New  York` = `new york`).
//! - **Built-in tasks keep their own verifiers** behind the same function
//!   ([`super::builtin::BuiltinTask::verify`]): countdown checks the expression, the others
//!   compare the extracted number with the problem's.
//!
//! `judge` lives in [`super::verdict`]; this file holds the extraction and the comparison, which
//! the built-in verifiers use too.

/// The answer a text gives, by the rules of the module doc. Numbers come back normalized
/// ([`normalize_number`]: `+1,234.50` → `1234.5`), anything else trimmed.
pub fn extract(text: &str) -> String {
    let raw = marked(text)
        .or_else(|| last_number(text))
        .unwrap_or_else(|| text.trim().to_string());
    normalize_number(&raw)
}

/// The answer a text marks as its answer: the last `<answer>…</answer>`, else the last
/// `\boxed{…}`, else the text after the last `####`; `None` when it marks none.
pub fn marked(text: &str) -> Option<String> {
    answer_tag(text)
        .or_else(|| last_boxed(text))
        .or_else(|| after_marker(text))
}

fn answer_tag(text: &str) -> Option<String> {
    let start = text.rfind("<answer>")? + "<answer>".len();
    let rest = &text[start..];
    let content = rest.find("</answer>").map_or(rest, |end| &rest[..end]);
    Some(content.trim().to_string())
}

fn after_marker(text: &str) -> Option<String> {
    let start = text.rfind("####")? + 4;
    text[start..]
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
}

/// The content of the last `\boxed{…}` (braces matched).
pub fn last_boxed(text: &str) -> Option<String> {
    let mut found = None;
    let mut from = 0;
    while let Some(at) = text[from..].find("\\boxed") {
        let open = from + at + "\\boxed".len();
        from = open;
        let rest = text[open..].trim_start();
        if !rest.starts_with('{') {
            continue;
        }
        let body_start = text.len() - rest.len() + 1;
        let mut depth = 1usize;
        for (i, c) in text[body_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        found = Some(text[body_start..body_start + i].trim().to_string());
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// The last number written in `text`: ASCII digits with thousands commas, a decimal point or a
/// fraction bar between digits, a sign when it is not an operator after an operand (`5-3` and
/// `5 - 3` end in `3`, `x = -3` and `it is -3` in `-3`), and a percent sign after it.
fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let end = chars.iter().rposition(char::is_ascii_digit)? + 1;
    let mut start = end;
    while start > 0 {
        let c = chars[start - 1];
        let joins = matches!(c, ',' | '.' | '/') && start >= 2 && chars[start - 2].is_ascii_digit();
        if c.is_ascii_digit() || joins {
            start -= 1;
        } else {
            break;
        }
    }
    if start > 0 && matches!(chars[start - 1], '-' | '−' | '+') {
        // An operator after an operand (`5-3`, `5 - 3`, `x-3`), else a sign (`x = -3`, `is -7`).
        let before = &chars[..start - 1];
        let adjacent = before.last().is_some_and(char::is_ascii_alphanumeric);
        let operand = before
            .iter()
            .rev()
            .find(|c| !c.is_whitespace())
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, ')' | ']' | '}'));
        if !(adjacent || operand) {
            start -= 1;
        }
    }
    let mut s: String = chars[start..end].iter().collect();
    if chars.get(end) == Some(&'%') {
        s.push('%');
    }
    Some(s)
}

/// Normalizes a number's spelling: a leading `+` or `−` (U+2212), thousands commas, trailing
/// zeros after the point and a final `.` go (`+1,234.50` → `1234.5`, `−0.0` → `0`); anything
/// that is not a plain decimal number comes back trimmed and otherwise unchanged.
pub fn normalize_number(text: &str) -> String {
    let trimmed = text.trim();
    match decimal_parts(trimmed) {
        Some((negative, int_digits, frac)) => {
            let int_digits = int_digits.trim_start_matches('0');
            let int_digits = if int_digits.is_empty() {
                "0"
            } else {
                int_digits
            };
            let frac = frac.trim_end_matches('0');
            let is_zero = int_digits == "0" && frac.is_empty();
            let mut out = String::new();
            if negative && !is_zero {
                out.push('-');
            }
            out.push_str(int_digits);
            if !frac.is_empty() {
                out.push('.');
                out.push_str(frac);
            }
            out
        }
        None => trimmed.to_string(),
    }
}

/// A plain decimal number's sign, integer digits (commas removed) and fractional digits.
fn decimal_parts(text: &str) -> Option<(bool, String, &str)> {
    let s = text.trim();
    let (negative, s) = if let Some(rest) = s.strip_prefix('-') {
        (true, rest)
    } else if let Some(rest) = s.strip_prefix('−') {
        (true, rest)
    } else {
        (false, s.strip_prefix('+').unwrap_or(s))
    };
    let s = s.strip_suffix('.').unwrap_or(s);
    let (int_part, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    // Commas only as thousands separators: 1,234,567.
    let groups: Vec<&str> = int_part.split(',').collect();
    let commas_ok = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    let int_digits = groups.concat();
    let frac_ok = frac.is_none_or(|f| !f.is_empty() && all_digits(f));
    let ok = !int_digits.is_empty() && all_digits(&int_digits) && commas_ok && frac_ok;
    let frac = frac.unwrap_or("");
    ok.then_some((negative, int_digits, frac))
}

/// An exact rational: `num / den` with `den > 0`, in lowest terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rational {
    num: i128,
    den: i128,
}

/// Beyond this many digits a value no longer fits the rational's `i128` products.
const MAX_DIGITS: usize = 36;

impl Rational {
    fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs()).max(1) as i128;
        let sign = if den < 0 { -1 } else { 1 };
        Some(Self {
            num: sign * num / g,
            den: sign * den / g,
        })
    }

    fn div(self, other: Self) -> Option<Self> {
        Self::new(
            self.num.checked_mul(other.den)?,
            self.den.checked_mul(other.num)?,
        )
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The exact value of a number written as `-1,234.5`, `+7`, `−3`, `3/4`, `\frac{3}{4}` (or
/// `\dfrac`, `\tfrac`), `50%` (as 50) or `$12`; `None` for anything else, including unicode
/// digits and numbers of more than 36 digits.
fn value(text: &str) -> Option<Rational> {
    let s = text.trim().trim_start_matches('$').trim();
    let s = s.strip_suffix('%').unwrap_or(s).trim();
    for prefix in ["\\frac", "\\dfrac", "\\tfrac"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let (num, rest) = braced(rest)?;
            let (den, rest) = braced(rest)?;
            if !rest.trim().is_empty() {
                return None;
            }
            return value(num)?.div(value(den)?);
        }
    }
    if let Some((num, den)) = s.split_once('/') {
        return decimal(num)?.div(decimal(den)?);
    }
    decimal(s)
}

/// `{…}` at the start of `s` (after spaces): its content and what follows.
fn braced(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('{')?;
    let end = s.find('}')?;
    Some((&s[..end], &s[end + 1..]))
}

fn decimal(text: &str) -> Option<Rational> {
    let (negative, int_digits, frac) = decimal_parts(text)?;
    let digits = format!("{int_digits}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_DIGITS || frac.len() > MAX_DIGITS {
        return None;
    }
    let magnitude: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let den = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    Rational::new(if negative { -magnitude } else { magnitude }, den)
}

/// Text compared as the verdict compares it: trimmed, lowercase, inner whitespace collapsed.
fn text_key(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether two answers (already extracted) agree: by exact value when both read as numbers,
/// else as text (trimmed, case-insensitive, inner whitespace collapsed).
pub fn answers_equal(answer: &str, reference: &str) -> bool {
    match (value(answer), value(reference)) {
        (Some(a), Some(b)) => a == b,
        _ => text_key(&normalize_number(answer)) == text_key(&normalize_number(reference)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_takes_the_first_rule_that_applies() {
        let cases = [
            ("<think>2+2</think><answer> 4 </answer>", "4"),
            ("<answer>1</answer> then <answer>2</answer>", "2"),
            ("<answer>7", "7"),
            ("so <answer> 1,234 </answer>", "1234"),
            ("so she has 18 left.\n#### 1,234", "1234"),
            ("48/2 = 24. 48 + 24 = 72.\n#### 72", "72"),
            ("#### 5\n\nDone", "5"),
            ("The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
            ("\\boxed{3} no wait \\boxed{ 4 }", "4"),
            // The tag wins over a box, a box over `####`.
            ("\\boxed{3} so <answer>5</answer>", "5"),
            ("#### 9 and finally \\boxed{8}", "8"),
            // No mark: the last number.
            ("first 3, then 5, finally 12.50 apples", "12.5"),
            ("it costs -7 dollars", "-7"),
            ("it is −7", "-7"),
            ("5-3", "3"),
            ("5 - 3", "3"),
            ("(2+1) -4", "4"),
            ("x = -3", "-3"),
            ("a third is 1/3", "1/3"),
            ("grew by 50%", "50%"),
            ("  42  ", "42"),
            ("+17", "17"),
            ("5.0", "5"),
            ("2.50", "2.5"),
            ("-0.0", "0"),
            ("The total is 72.", "72"),
            ("1,234,567", "1234567"),
            ("72.", "72"),
            ("12,34", "12,34"),
            // No number either: the whole text.
            ("no number here", "no number here"),
            (" Lily is a knight ", "Lily is a knight"),
        ];
        for (text, expected) in cases {
            assert_eq!(extract(text), expected, "{text:?}");
        }
    }

    /// The verdict's table: (completion's answer, reference, equal).
    #[test]
    fn answers_compare_by_exact_value_or_as_text() {
        let cases = [
            ("42", "42.0", true),
            ("+42", "42", true),
            ("42.", "42", true),
            ("1,000", "1000", true),
            ("−3", "-3", true),
            ("1/2", "0.5", true),
            ("-1/2", "-0.5", true),
            ("1/3", "0.333", false),
            ("1/3", "0.3333333333333", false),
            ("2/6", "1/3", true),
            ("0.75", "3/4", true),
            ("\\frac{3}{4}", "0.75", true),
            ("\\dfrac{1}{2}", "1/2", true),
            ("50%", "50", true),
            ("$12", "12", true),
            ("-0", "0", true),
            ("+5", "5.00", true),
            ("Paris", " paris ", true),
            ("New  York", "new york", true),
            ("paris", "rome", false),
            ("5", "6", false),
            ("1,23", "123", false),
            ("12,34", "1234", false),
            ("1/0", "1", false),
            ("١٢", "12", false),
            ("42", "forty-two", false),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                false,
            ),
            ("1,234,567,890,123,456,789", "1234567890123456789", true),
        ];
        for (a, b, equal) in cases {
            assert_eq!(answers_equal(a, b), equal, "{a:?} against {b:?}");
            assert_eq!(answers_equal(b, a), equal, "{b:?} against {a:?}");
        }
        // Past the rationals' digits the text is compared as written, never by rounding.
        let long = "9".repeat(400);
        assert_eq!(value(&long), None);
        assert!(answers_equal(&long, &long));
        assert!(!answers_equal(&long, &format!("{long}0")));
    }
}
