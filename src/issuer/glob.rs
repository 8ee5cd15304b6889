//! Pure: glob patterns of issuer policies. `*` matches any run of characters (`/` included),
//! `?` exactly one character, everything else itself; a pattern matches the whole name, never
//! a part of it.
//!
//! Names come from grants, so from any tenant: matching never backtracks. The pattern is cut
//! at its stars; the first piece must start the name, the last must end it, and the pieces in
//! between are found left to right, each at its leftmost place after the previous one (the
//! leftmost place leaves the most room to the rest, so it is never wrong). That costs at most
//! one comparison per (name position, pattern character) pair, whatever the input: no
//! exponential blow-up such as a backtracking matcher has on `*a*a*a*...b`.

/// Whether `pattern` matches all of `name`.
pub fn matches(pattern: &str, name: &str) -> bool {
    matches_counting(pattern, name).0
}

/// [`matches`], and how many character comparisons it made (for the tests of its cost).
pub(crate) fn matches_counting(pattern: &str, name: &str) -> (bool, usize) {
    let name: Vec<char> = name.chars().collect();
    let pieces: Vec<Vec<char>> = pattern.split('*').map(|p| p.chars().collect()).collect();
    let mut comparisons = 0;
    let mut equal = |piece: &[char], text: &[char]| {
        piece.iter().zip(text).all(|(p, t)| {
            comparisons += 1;
            *p == '?' || p == t
        })
    };
    let [first, middle @ .., last] = pieces.as_slice() else {
        // No star: one piece, the whole name.
        let piece = &pieces[0];
        let matched = piece.len() == name.len() && equal(piece, &name);
        return (matched, comparisons);
    };
    // Every character but a star stands for one character of the name.
    let fixed: usize = pieces.iter().map(Vec::len).sum();
    if fixed > name.len() {
        return (false, comparisons);
    }
    let tail = name.len() - last.len();
    if !equal(first, &name) || !equal(last, &name[tail..]) {
        return (false, comparisons);
    }
    let between = &name[first.len()..tail];
    let mut at = 0;
    for piece in middle.iter().filter(|piece| !piece.is_empty()) {
        let found = (at..=between.len().saturating_sub(piece.len()))
            .take_while(|start| start + piece.len() <= between.len())
            .find(|&start| equal(piece, &between[start..start + piece.len()]));
        match found {
            Some(start) => at = start + piece.len(),
            None => return (false, comparisons),
        }
    }
    (true, comparisons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_without_wildcards_matches_exactly_that_name() {
        assert!(matches("shared-reports", "shared-reports"));
        assert!(!matches("shared-reports", "shared-reports-2"));
        assert!(!matches("shared-reports", "x-shared-reports"));
        assert!(!matches("shared-reports", "shared"));
        assert!(!matches("shared", ""));
        assert!(matches("", ""));
    }

    #[test]
    fn a_star_matches_any_run_including_none() {
        assert!(matches("apps-*", "apps-"));
        assert!(matches("apps-*", "apps-data"));
        assert!(!matches("apps-*", "apps"));
        assert!(!matches("apps-*", "other-apps-data"));
        assert!(matches("*-logs", "apps-logs"));
        assert!(!matches("*-logs", "apps-logs-old"));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("a*b*c", "a-c-b"));
        assert!(matches("*", ""));
        assert!(matches("**", "anything"));
    }

    #[test]
    fn a_star_crosses_slashes_in_blob_paths() {
        assert!(matches("reports/*", "reports/2030/01/summary.csv"));
        assert!(matches("*/summary.csv", "reports/2030/summary.csv"));
        assert!(!matches("reports/*", "reportsx/a"));
    }

    #[test]
    fn a_question_mark_matches_exactly_one_character() {
        assert!(matches("team-?", "team-a"));
        assert!(!matches("team-?", "team-"));
        assert!(!matches("team-?", "team-ab"));
        assert!(matches("?*", "x"));
        assert!(!matches("?*", ""));
        // One character, not one byte.
        assert!(matches("r?port", "rëport"));
    }

    #[test]
    fn the_leftmost_place_of_a_middle_piece_is_never_wrong() {
        assert!(matches("*ab*abc", "ababc-xabc"));
        assert!(matches("a*?b*c", "axbbc"));
        assert!(!matches("a*bb*bb", "abbb"));
        assert!(matches("a*bb*bb", "abbbb"));
    }

    /// A backtracking matcher takes exponential time on these; this one stays within one
    /// comparison per (name character, pattern character) pair, and far below on the bomb.
    #[test]
    fn pathological_patterns_cost_at_most_name_times_pattern_comparisons() {
        let name = "a".repeat(1024);
        let bomb = format!("{}b", "a*".repeat(100));
        let (matched, comparisons) = matches_counting(&bomb, &name);
        assert!(!matched);
        assert!(
            comparisons <= 4 * (name.len() + bomb.len()),
            "{comparisons}"
        );

        let near_misses = format!("*{}b*", "a".repeat(200));
        let (matched, comparisons) = matches_counting(&near_misses, &name);
        assert!(!matched);
        assert!(
            comparisons <= name.len() * near_misses.len(),
            "{comparisons}"
        );

        let many_stars = format!("{}b", "*a".repeat(500));
        let (matched, comparisons) = matches_counting(&many_stars, &name);
        assert!(!matched);
        assert!(
            comparisons <= 4 * (name.len() + many_stars.len()),
            "{comparisons}"
        );
    }

    #[test]
    fn a_pattern_longer_than_the_name_is_refused_without_comparing() {
        let (matched, comparisons) = matches_counting(&"?".repeat(2000), "short");
        assert!(!matched);
        assert_eq!(comparisons, 0);
    }
}
