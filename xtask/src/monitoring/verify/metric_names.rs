//! The metric names a PromQL expression reads. Enough of PromQL's lexical structure to tell a
//! metric name from a function, keyword, label or duration: strings, `{...}` matchers, `[...]`
//! ranges and the label lists after `by`/`on`/... are skipped; a name followed by `(` is a
//! function. The expressions are checked by `promtool` for syntax separately.

use std::collections::BTreeSet;

/// Words that are not metric names even where one could stand.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];
/// Words followed by a parenthesised label list.
const LABEL_LIST: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Every metric name `expr` reads (recorded series included), in order, once each.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c.is_ascii_digit() || (c == '.' && next_is_digit(&chars, i)) {
            // Numbers and durations (`0.95`, `1e9`, `5m`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_significant(&chars, i);
            if LABEL_LIST.contains(&word.as_str()) {
                if next.is_some_and(|at| chars[at] == '(') {
                    i = next.map_or(i, |at| skip_group(&chars, at, '(', ')'));
                }
            } else if next.is_some_and(|at| chars[at] == '(' || starts_label_list(&chars, at)) {
                // A function, or an aggregation (`sum by (le) (...)`).
            } else if !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Whether `by` or `without` starts at `at` (an aggregation's grouping before its argument).
fn starts_label_list(chars: &[char], at: usize) -> bool {
    ["by", "without"].iter().any(|word| {
        let end = at + word.len();
        chars.len() > end
            && chars[at..end].iter().copied().eq(word.chars())
            && !(chars[end].is_ascii_alphanumeric() || chars[end] == '_')
    })
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

fn next_significant(chars: &[char], from: usize) -> Option<usize> {
    (from..chars.len()).find(|&at| !chars[at].is_whitespace())
}

/// The index after the string starting at `start` (escapes honoured except in backticks).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index after the group opened at `start`, strings inside skipped.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn finds_the_histogram_behind_a_quantile() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.95, sum by (job, le) (rate(candle_request_duration_seconds_bucket{route=~"/api/v1/embed|grpc.Embed"}[5m])))"#
            ),
            ["candle_request_duration_seconds_bucket"]
        );
    }

    #[test]
    fn skips_keywords_label_lists_strings_and_numbers() {
        assert_eq!(
            names(
                r#"akidb:cpu:ratio > 0.8 and on (namespace) changes(kube_hpa{x="a b"}[5m]) == 0 or vector(1e9)"#
            ),
            ["akidb:cpu:ratio", "kube_hpa"]
        );
        assert_eq!(
            names("sum(rate(a_total[5m])) by (le) / ignoring (service) group_left b offset 1h"),
            ["a_total", "b"]
        );
        assert_eq!(
            names("sum by (job) (x) / max without (pod) (y) + byte_count"),
            ["byte_count", "x", "y"]
        );
    }
}
