//! Splitting a request's texts into forward passes.
//!
//! Texts are sorted by length (longest first, as sentence-transformers does) and grouped so that
//! each pass pads little and stays within a memory budget: the attention scores of one pass hold
//! `texts × heads × length²` floats, so a pass of 256-token texts holds few of them while a pass
//! of short queries holds many.

/// The most padded tokens one forward pass holds (its activations are about 20 KiB a token).
pub(crate) const MAX_PASS_TOKENS: usize = 2048;
/// The most `texts × length²` one pass holds (its attention scores are 48 bytes each: 12 heads
/// of f32).
pub(crate) const MAX_PASS_ATTENTION: usize = 1 << 18;

/// One forward pass: which texts (by index in the request) and the length they are padded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Indices into the request's texts, longest first.
    pub texts: Vec<usize>,
    /// The longest of their lengths.
    pub padded_len: usize,
}

/// Groups texts of the given token `lengths` into passes. Every index appears in exactly one
/// pass; a text that alone exceeds a budget gets a pass of its own.
pub(crate) fn plan(lengths: &[usize]) -> Vec<Pass> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut passes: Vec<Pass> = Vec::new();
    for index in order {
        let len = lengths[index];
        if let Some(pass) = passes.last_mut() {
            let n = pass.texts.len() + 1;
            let fits = n * pass.padded_len <= MAX_PASS_TOKENS
                && n * pass.padded_len * pass.padded_len <= MAX_PASS_ATTENTION;
            if fits {
                pass.texts.push(index);
                continue;
            }
        }
        passes.push(Pass {
            texts: vec![index],
            padded_len: len,
        });
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_lands_in_one_pass_padded_to_its_longest() {
        let lengths = [5, 256, 9, 9, 3, 256, 40, 7];
        let passes = plan(&lengths);
        let mut seen: Vec<usize> = passes.iter().flat_map(|p| p.texts.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for pass in &passes {
            let longest = pass.texts.iter().map(|&i| lengths[i]).max().unwrap();
            assert_eq!(pass.padded_len, longest);
            assert!(
                pass.texts
                    .windows(2)
                    .all(|w| lengths[w[0]] >= lengths[w[1]])
            );
        }
    }

    #[test]
    fn passes_stay_within_the_budgets() {
        let lengths: Vec<usize> = (0..1000).map(|i| 3 + (i * 37) % 254).collect();
        for pass in plan(&lengths) {
            let n = pass.texts.len();
            assert!(n * pass.padded_len <= MAX_PASS_TOKENS || n == 1, "{pass:?}");
            assert!(
                n * pass.padded_len.pow(2) <= MAX_PASS_ATTENTION || n == 1,
                "{pass:?}"
            );
        }
        // Long texts get small passes, short ones big passes.
        assert_eq!(plan(&[256; 10])[0].texts.len(), 4);
        assert_eq!(plan(&[8; 1000])[0].texts.len(), 256);
    }

    #[test]
    fn no_texts_no_passes() {
        assert!(plan(&[]).is_empty());
    }
}
