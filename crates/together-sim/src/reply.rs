//! The text of a completion: a short echo of the input, or filler of a
//! drawn length, cut at `max_tokens`.

/// Tokens of `chars` characters (4 a token).
pub(crate) fn chars_to_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// A reply, cut at `max_tokens` (4 chars a token): `length` tokens of
/// filler when given, else a short one that echoes the input.
pub(crate) fn reply(
    model: &str,
    input: &str,
    max_tokens: u64,
    length: Option<u64>,
) -> (String, u64, &'static str) {
    let full = match length {
        // Never more than the budget allows: the cut below makes the rest.
        Some(n) => "sim ".repeat(n.min(max_tokens.saturating_add(1)).min(1 << 20) as usize),
        None => {
            let mut echo: String = input.chars().take(48).collect();
            if echo.len() < input.len() {
                echo.push_str("...");
            }
            format!("Simulated reply from {model} to: {echo}")
        }
    };
    let max_chars = (max_tokens as usize).saturating_mul(4);
    if full.len() > max_chars {
        let cut: String = full.chars().take(max_chars).collect();
        let used = chars_to_tokens(cut.len());
        (cut, used, "length")
    } else {
        (full.clone(), chars_to_tokens(full.len()), "stop")
    }
}
