//! Input echoed in error messages, cut to a bounded prefix: an error about a 10 MB name or
//! number says which input it means without carrying or printing all of it. Every crate's
//! errors echo input through these functions.

/// How many bytes of an input an error message repeats at most; longer input is cut to a
/// prefix of at most this many bytes (on a character boundary), followed by its length.
pub const ECHO_LIMIT: usize = 64;

/// `text` as an error message may repeat it: itself when it is at most [`ECHO_LIMIT`] bytes,
/// else its first bytes, `…` and the whole length (`aaaa… (10485760 bytes)`).
///
/// ```
/// use rm_model::clip;
///
/// assert_eq!(clip("2Gi"), "2Gi");
/// let long = "9".repeat(10_000_000);
/// assert_eq!(clip(&long), format!("{}… (10000000 bytes)", "9".repeat(64)));
/// ```
pub fn clip(text: &str) -> String {
    if text.len() <= ECHO_LIMIT {
        return text.to_owned();
    }
    let mut end = ECHO_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// How many lines [`clip_lines`] keeps.
const LINES: usize = 24;

/// A message of several lines (a parser's error with the offending line quoted) as an error
/// may repeat it: each line cut to four times [`ECHO_LIMIT`], and at most 24 lines.
pub fn clip_lines(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == LINES {
            out.push_str("\n…");
            break;
        }
        if i > 0 {
            out.push('\n');
        }
        if line.len() <= 4 * ECHO_LIMIT {
            out.push_str(line);
        } else {
            let mut end = 4 * ECHO_LIMIT;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&line[..end]);
            out.push_str(&format!("… ({} bytes)", line.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_kept_and_long_input_is_cut_on_a_character_boundary() {
        assert_eq!(clip(""), "");
        assert_eq!(clip(&"a".repeat(64)), "a".repeat(64));
        assert_eq!(
            clip(&"a".repeat(65)),
            format!("{}… (65 bytes)", "a".repeat(64))
        );
        // 'é' is two bytes: 63 a's and an é end at byte 65, so the cut falls before it.
        let text = format!("{}é{}", "a".repeat(63), "b".repeat(100));
        assert_eq!(clip(&text), format!("{}… (165 bytes)", "a".repeat(63)));
    }

    /// Every error of this crate that repeats input repeats a bounded prefix of it.
    #[test]
    fn errors_about_huge_input_stay_short() {
        let huge = |c: &str| c.repeat(10 << 20);
        let messages = [
            crate::Quantity::parse(&huge("9")).unwrap_err().to_string(),
            crate::Quantity::parse(&format!("1{}", huge("x")))
                .unwrap_err()
                .to_string(),
            crate::Quantity::parse(&format!("0.{}", huge("1")))
                .unwrap_err()
                .to_string(),
            crate::ResourceName::new(&huge("a"))
                .unwrap_err()
                .to_string(),
            crate::ResourceName::new(&huge("!"))
                .unwrap_err()
                .to_string(),
            crate::Unit::parse(&huge("u")).unwrap_err().to_string(),
            crate::Labels::new()
                .insert("k", &huge("v"))
                .unwrap_err()
                .to_string(),
            serde_json::from_str::<crate::Constraint>(&format!(
                r#"{{"label": "k", "op": "{}"}}"#,
                huge("o")
            ))
            .unwrap_err()
            .to_string(),
        ];
        for message in messages {
            assert!(
                message.len() < 300,
                "{} bytes: {}",
                message.len(),
                &message[..300]
            );
            assert!(message.contains(" bytes)"), "{message}");
        }
    }

    #[test]
    fn messages_keep_their_lines_each_cut() {
        let message = format!("error at line 1\n1 | {}\n  | ^", "x".repeat(1_000_000));
        let clipped = clip_lines(&message);
        assert!(clipped.len() < 400, "{}", clipped.len());
        assert!(clipped.starts_with("error at line 1\n1 | xxx"));
        assert!(clipped.ends_with("(1000004 bytes)\n  | ^"));
        let many = "line\n".repeat(1000);
        assert_eq!(clip_lines(&many).lines().count(), LINES + 1);
    }
}
