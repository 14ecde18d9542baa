//! The model ids closest to a name that was not found.

/// Up to `n` ids of `ids` closest to `wanted`, best first.
///
/// Scoring: normalized Levenshtein similarity of the lowercased ids and of
/// their last path segments (after `/`), plus a bonus when one name
/// contains the other. Ids scoring under 0.4 are left out.
///
/// ```
/// let ids = ["meta-llama/Llama-3.3-70B-Instruct-Turbo", "BAAI/bge-large-en-v1.5"]
///     .map(String::from);
/// assert_eq!(
///     together_tower::closest_models("meta-llama/Llama-3.3-70B-Instruct", &ids, 3),
///     ["meta-llama/Llama-3.3-70B-Instruct-Turbo"],
/// );
/// ```
pub fn closest_models<'a>(wanted: &str, ids: &'a [String], n: usize) -> Vec<&'a str> {
    let wanted = wanted.trim().to_lowercase();
    let wanted_name = last_segment(&wanted);
    let mut scored: Vec<(f64, &str)> = ids
        .iter()
        .map(|id| {
            let lower = id.to_lowercase();
            let name = last_segment(&lower);
            let mut score = strsim::normalized_levenshtein(&wanted, &lower)
                .max(strsim::normalized_levenshtein(wanted_name, name));
            if !wanted_name.is_empty() && (name.contains(wanted_name) || lower.contains(&wanted)) {
                score += 0.5;
            } else if !name.is_empty() && wanted_name.contains(name) {
                score += 0.3;
            }
            (score, id.as_str())
        })
        .filter(|(score, _)| *score >= 0.4)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(n).map(|(_, id)| id).collect()
}

fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        [
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
            "mistralai/Mixtral-8x7B-Instruct-v0.1",
            "BAAI/bge-large-en-v1.5",
            "black-forest-labs/FLUX.1-schnell",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn typos_case_and_missing_org() {
        let ids = ids();
        assert_eq!(
            closest_models("meta-llama/Llama-3.3-70b-instruct-turbo", &ids, 1),
            ["meta-llama/Llama-3.3-70B-Instruct-Turbo"]
        );
        assert_eq!(
            closest_models("Mixtral-8x7B-Instruct-v0.1", &ids, 1),
            ["mistralai/Mixtral-8x7B-Instruct-v0.1"]
        );
        assert_eq!(
            closest_models("bge-large", &ids, 1),
            ["BAAI/bge-large-en-v1.5"]
        );
        assert_eq!(
            closest_models("FLUX.1-schnel", &ids, 1),
            ["black-forest-labs/FLUX.1-schnell"]
        );
        assert!(closest_models("zzzzzzzzzzzzzzzzzzzz", &ids, 3).is_empty());
    }
}
