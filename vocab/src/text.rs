//! Text bounds shared by the cores and drivers.

/// The longest prefix of `text` of at most `max` bytes that ends at a character
/// boundary (`str::floor_char_boundary`, which needs a newer Rust than ours).
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cuts_at_a_character_boundary_within_the_bound() {
        assert_eq!(cut("abc", 10), "abc");
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("", 3), "");
        // "é" is two bytes: a cut through it keeps the characters before.
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aé", 3), "aé");
        assert_eq!(cut("éé", 0), "");
    }
}
